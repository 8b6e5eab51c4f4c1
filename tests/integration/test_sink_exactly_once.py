"""The sink on the real broker: kill -9 mid-stream, restart, and every record is in ClickHouse once."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from base import topics
from base.settings import Settings
from sinks.audit import exactly_once_problems
from sinks.query import QueryError, run_query
from tests.integration.sink_stack import SinkProcess, count, offsets, produce, wait_for
from tests.integration.stack import free_port
from tests.sink_records import encoded_pings

pytestmark = pytest.mark.integration


@pytest.fixture()
def sink_env(stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path) -> dict[str, str]:
    return {
        **stack_env,
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_SINK_PORT": str(free_port()),
        # Small batches and a short interval: many batches, so the kill lands between insert and commit.
        "WHATSUP_SINK_BATCH_SIZE": "1500",
        "WHATSUP_SINK_FLUSH_INTERVAL_S": "0.2",
        "WHATSUP_LOG_LEVEL": "WARNING",
    }


def test_kill_9_mid_stream_then_restart_writes_every_record_exactly_once(
    sink_env: dict[str, str], tmp_path: Path
) -> None:
    settings = Settings.from_env(sink_env)
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    records = encoded_pings(drivers=30, per_driver=800)
    produce(settings, topic, records[:15_000])
    sink = SinkProcess(sink_env, tmp_path / "sink.log")
    sink.start()
    try:
        wait_for(
            lambda: count(settings, "SELECT count() FROM sink_offsets") >= 5_000, 120, "the first batches"
        )
        sink.kill()  # SIGKILL while batches are being written and committed
        produce(settings, topic, records[15_000:])  # the stream goes on while the sink is down
        sink.start()
        wait_for(
            lambda: count(settings, "SELECT uniqExact(partition, offset) FROM sink_offsets") >= len(records),
            150,
            "every record after the restart",
        )
        problems = exactly_once_problems(
            lambda sql, params: run_query(settings, sql, params),
            topics.GPS_PINGS_CLEAN,
            offsets(settings, topic),
        )
        assert problems == []
        assert count(settings, "SELECT count() FROM gps_pings") == len(records)
        assert count(settings, "SELECT sum(pings) FROM driver_daily_stats") == len(records)
        assert 'whatsup_sink_rows_total{table="gps_pings"}' in sink.metrics()
    finally:
        sink.stop()


def test_query_endpoint_is_read_only(sink_env: dict[str, str], tmp_path: Path) -> None:
    settings = Settings.from_env(sink_env)
    sink = SinkProcess(sink_env, tmp_path / "sink.log")
    sink.start()
    try:
        rows = run_query(settings, "SELECT {n:UInt8} + 1 AS answer", {"n": 41})
        assert rows == [{"answer": 42}]
        with pytest.raises(QueryError, match="readonly"):
            run_query(settings, "DROP TABLE gps_pings")
        with pytest.raises(QueryError, match=r"UNKNOWN_TABLE|Unknown table"):
            run_query(settings, "SELECT * FROM no_such_table")
        answer = httpx.post(f"{sink.url}/query", content=b"not json", timeout=5)
        assert answer.status_code == 400 and answer.json()["error"] == "bad_request"
        assert "expected" in answer.json()["message"]
        assert count(settings, "SELECT count() FROM gps_pings") == 0  # still there, untouched
    finally:
        sink.stop()
