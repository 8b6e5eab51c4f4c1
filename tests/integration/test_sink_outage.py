"""The sink's consumer loop on the real broker when ClickHouse fails, and with records it refuses."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import OperationalError
from confluent_kafka import Consumer, TopicPartition
from prometheus_client import REGISTRY

from base import topics
from base.settings import Settings
from schemas.codecs import codec
from sinks.audit import exactly_once_problems
from sinks.clickhouse import ClickHouseSink
from sinks.engine import make_client
from sinks.runner import SinkRunner, consumer_config
from tests.integration.sink_stack import offsets, produce, wait_for
from tests.integration.stack import Record, read_topic
from tests.sink_records import clean_ping, encoded_pings

pytestmark = pytest.mark.integration


class UnwellClickHouse:
    """A real chDB client whose inserts fail with a connection error while ``down`` is set."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.down = threading.Event()
        self.refused = 0

    def raw_insert(self, *args: Any, **kwargs: Any) -> Any:
        if self.down.is_set():
            self.refused += 1
            raise OperationalError(
                "Error HTTPConnectionPool(host='clickhouse', port=8123): Connection refused"
            )
        return self.client.raw_insert(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


@pytest.fixture()
def settings(stack_settings: Settings, tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": stack_settings.kafka_bootstrap,
            "WHATSUP_TOPIC_PREFIX": stack_settings.topic_prefix,
            "WHATSUP_APP_ID": stack_settings.app_id,
            "WHATSUP_PARTITIONS": str(stack_settings.partitions),
            "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
            "WHATSUP_SINK_BATCH_SIZE": "500",
            "WHATSUP_SINK_FLUSH_INTERVAL_S": "0.2",
        }
    )


@pytest.fixture()
def unwell(settings: Settings) -> Iterator[UnwellClickHouse]:
    client = make_client(settings)
    try:
        yield UnwellClickHouse(client)
    finally:
        client.close()


def paused() -> float | None:
    return REGISTRY.get_sample_value("whatsup_sink_paused")


def committed(settings: Settings, topic: str) -> int:
    consumer = Consumer({**consumer_config(settings)})
    try:
        parts = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        tps = consumer.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        consumer.close()


def test_clickhouse_outage_pauses_then_everything_lands_once(
    settings: Settings, unwell: UnwellClickHouse
) -> None:
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    records = encoded_pings(drivers=10, per_driver=300)
    sink = ClickHouseSink(unwell, settings)  # type: ignore[arg-type]
    sink.start()
    runner = SinkRunner(settings, sink, max_backoff_s=1.0)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        produce(settings, topic, records[:1000])
        wait_for(lambda: committed(settings, topic) == 1000, 60, "the first records committed")
        unwell.down.set()
        produce(settings, topic, records[1000:])
        wait_for(lambda: unwell.refused >= 3 and paused() == 1, 60, "retries while paused")
        assert committed(settings, topic) == 1000  # nothing committed while nothing could be written
        assert thread.is_alive()
        unwell.down.clear()
        wait_for(lambda: committed(settings, topic) == len(records), 60, "every record after the outage")
        assert paused() == 0
    finally:
        runner.stop()
        thread.join(30)

    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(unwell.client.query(sql, parameters=params).named_results())

    assert exactly_once_problems(run, topics.GPS_PINGS_CLEAN, offsets(settings, topic)) == []


def test_refused_records_go_to_the_dead_letter_topic_and_the_rest_lands(
    settings: Settings, unwell: UnwellClickHouse
) -> None:
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    encode = codec("CleanPing").encode
    values = [encode(clean_ping("d7", seq, lat=95.0 if seq == 40 else None)) for seq in range(100)]
    values[70] = b"\x00garbage"
    produce(settings, topic, [(b"d7", v) for v in values])
    sink = ClickHouseSink(unwell, settings)  # type: ignore[arg-type]
    sink.start()
    runner = SinkRunner(settings, sink)
    thread = threading.Thread(target=runner.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: committed(settings, topic) == 100, 60, "the batch committed")
    finally:
        runner.stop()
        thread.join(30)
    assert unwell.client.query("SELECT count() FROM gps_pings").result_rows[0][0] == 98
    dead_topic = topics.qualified(topics.SINK_DEADLETTER, settings.topic_prefix)
    letters: list[Record] = read_topic(settings, dead_topic, "SinkDeadLetter", until=lambda r: len(r) >= 2)
    found = sorted((r.value["source_offset"], r.value["reason"]) for r in letters)
    assert found == [(40, "refused"), (70, "undecodable")]
    refused = next(r.value for r in letters if r.value["reason"] == "refused")
    assert "lat_in_range" in refused["error"] and refused["value"] == values[40]
    assert refused["source_topic"] == topics.GPS_PINGS_CLEAN and refused["table"] == "gps_pings"
