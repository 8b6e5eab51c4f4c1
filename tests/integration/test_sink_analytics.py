"""docs/ANALYTICS.md on real data: a simulated fleet through the worker, the other topics from a story.

Every query of the page is run through the sink's query endpoint and its answer checked against the
simulator's ground truth or the story's; the materialized views are checked against the same aggregates
recomputed from the base tables.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from base import topics
from base.settings import Settings
from simulator.model import SimConfig, simulate
from simulator.run import produce_to_kafka, write_truth
from sinks.query import run_query
from tests.analytics_data import make_story
from tests.integration.sink_stack import SinkProcess, count, produce, wait_for
from tests.integration.stack import WorkerProcess, free_port

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[2] / "docs" / "ANALYTICS.md"


def doc_queries() -> dict[str, str]:
    """Return every named query of docs/ANALYTICS.md."""
    found = re.findall(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    return dict(found)


def test_the_page_names_every_query_once() -> None:
    names = re.findall(r"<!-- query: (\w+) -->", DOC.read_text())
    assert len(names) == len(set(names)) == len(doc_queries()) >= 11


@pytest.fixture()
def sink_env(stack_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return {
        **stack_env,
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_SINK_PORT": str(free_port()),
        "WHATSUP_LOG_LEVEL": "WARNING",
    }


def test_analyst_queries_answer_from_a_simulated_run(
    worker: WorkerProcess, sink_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    settings = Settings.from_env(sink_env)
    sink = SinkProcess(sink_env, tmp_path / "sink.log")
    sink.start()
    try:
        end_ms = int(time.time() * 1000)
        runs = simulate(SimConfig(drivers=8, minutes=10, end_ms=end_ms, seed=11, driver_prefix="an"))
        truth = write_truth(runs, tmp_path / "truth")
        produce_to_kafka(runs, settings)
        drivers = sorted(run.driver_id for run in runs)
        story = make_story(drivers, end_ms - 10 * 60_000)
        for topic, records in story.records.items():
            produce(settings, topics.qualified(topic, settings.topic_prefix), records)
        expected_verdicts = sum(truth["expected"].values())
        everything = expected_verdicts + sum(len(r) for r in story.records.values())
        wait_for(
            lambda: count(settings, "SELECT count() FROM sink_offsets") >= everything, 90, "every record"
        )
        check_queries(settings, truth, story, drivers)
        check_views_match_base_tables(settings)
    finally:
        sink.stop()


def q(settings: Settings, name: str, **params: Any) -> list[dict[str, Any]]:
    return run_query(settings, doc_queries()[name], params)


def check_queries(settings: Settings, truth: dict[str, Any], story: Any, drivers: list[str]) -> None:
    clean: Counter[str] = Counter({d: c.get("clean", 0) for d, c in truth["per_driver"].items()})
    rejected: Counter[str] = Counter()
    for verdicts in truth["per_driver"].values():
        rejected.update({v: n for v, n in verdicts.items() if v != "clean"})

    rows = q(settings, "pings_per_driver", hours=48)
    assert {r["driver_id"]: r["pings"] for r in rows} == {d: n for d, n in clean.items() if n}
    rows = q(settings, "rejected_by_reason", hours=48)
    assert {r["reason"]: r["pings"] for r in rows} == dict(rejected)

    for delivery, status in story.final_status.items():
        (row,) = q(settings, "delivery_current_status", delivery_id=delivery)
        assert (row["status"], row["driver_id"]) == (status, story.driver_of[delivery])
        history = q(settings, "delivery_history", delivery_id=delivery)
        assert [r["type"] for r in history] == story.history[delivery]
    for status in ("en_route", "delivered", "failed"):
        rows = q(settings, "deliveries_by_status", status=status)
        assert sorted(r["delivery_id"] for r in rows) == sorted(
            d for d, s in story.final_status.items() if s == status
        )

    delivery = next(iter(story.delivered))
    positions = q(settings, "delivery_positions", delivery_id=delivery)
    stamps = [r["device_ts"] for r in positions]
    assert len(positions) > 10 and stamps == sorted(stamps)

    per_driver: dict[str, Counter[str]] = {}
    for day in {r["day"] for r in q(settings, "fleet_daily_kpis")}:  # one day, or two across midnight
        for row in q(settings, "driver_daily_kpis", day=day):
            per_driver.setdefault(row["driver_id"], Counter()).update(
                {k: row[k] for k in ("pings", "stalls", "deliveries", "failed")}
            )
    assert {d: c["pings"] for d, c in per_driver.items() if c["pings"]} == {
        d: n for d, n in clean.items() if n
    }
    assert {d: c["stalls"] for d, c in per_driver.items() if c["stalls"]} == story.stalls
    delivered_by = Counter(story.driver_of[d] for d in story.delivered)
    assert {d: c["deliveries"] for d, c in per_driver.items() if c["deliveries"]} == dict(delivered_by)
    fleet = q(settings, "fleet_daily_kpis")
    assert sum(r["pings"] for r in fleet) == sum(clean.values())
    assert sum(r["deliveries"] for r in fleet) == len(story.delivered)
    on_time = sum(1 for ts, promised in story.delivered.values() if promised and ts <= promised)
    with_promise = sum(1 for _, promised in story.delivered.values() if promised)
    if len(fleet) == 1:  # the simulated ten minutes did not cross midnight
        assert fleet[0]["on_time_rate"] == round(on_time / with_promise, 3)

    hot = q(settings, "hot_cells", hours=48, min_samples=5)
    assert hot and all(r["pings"] >= 5 and r["distinct_drivers"] >= 1 for r in hot)
    speeds = [r["avg_speed_mps"] for r in hot]
    assert speeds == sorted(speeds)

    rows = q(settings, "eta_accuracy")
    assert {
        r["delivery_id"]: (r["first_eta_error_s"], r["last_eta_error_s"]) for r in rows
    } == story.eta_errors_s

    rows = q(settings, "message_funnel")
    funnel = {r.pop("reason"): r for r in rows}
    assert funnel == story.funnel

    for driver in drivers[:2]:
        rows = q(settings, "location_reads", driver_id=driver)
        assert len(rows) == story.location_reads[driver]
    clear = count(settings, "SELECT count() FROM whatsapp_messages WHERE to_hash LIKE '+%'")
    assert clear == 0  # only hashes, never the number


def check_views_match_base_tables(settings: Settings) -> None:
    view = run_query(
        settings,
        "SELECT day, driver_id, sum(pings) AS pings, sum(late_pings) AS late, round(sum(distance_m), 3) AS m,"
        " sum(deliveries) AS deliveries, sum(delivered_with_promise) AS promised,"
        " sum(delivered_on_time) AS on_time, sum(failed) AS failed, sum(stalls) AS stalls"
        " FROM driver_daily_stats GROUP BY day, driver_id ORDER BY day, driver_id",
    )
    base = run_query(
        settings,
        """
        SELECT day, driver_id, sum(pings) AS pings, sum(late) AS late, round(sum(m), 3) AS m,
               sum(deliveries) AS deliveries, sum(promised) AS promised, sum(on_time) AS on_time,
               sum(failed) AS failed, sum(stalls) AS stalls
        FROM (
            SELECT toDate(device_ts) AS day, driver_id, count() AS pings, countIf(late) AS late,
                   sum(toFloat64(step_m)) AS m, 0 AS deliveries, 0 AS promised, 0 AS on_time, 0 AS failed,
                   0 AS stalls
            FROM gps_pings FINAL GROUP BY day, driver_id
            UNION ALL
            SELECT toDate(ts), driver_id, 0, 0, 0, countIf(type = 'delivered'),
                   countIf(type = 'delivered' AND promised_at IS NOT NULL),
                   countIf(type = 'delivered' AND ts <= promised_at), countIf(type = 'failed'), 0
            FROM delivery_events FINAL WHERE type IN ('delivered', 'failed') GROUP BY 1, 2
            UNION ALL
            SELECT toDate(started_at), driver_id, 0, 0, 0, 0, 0, 0, 0, count()
            FROM alerts FINAL WHERE kind = 'stall' GROUP BY 1, 2
        )
        GROUP BY day, driver_id ORDER BY day, driver_id
        """,
    )
    assert view == base and len(view) >= 8
    cells_view = run_query(
        settings,
        "SELECT hour, h3_r7, sum(samples) AS n, round(sum(speed_sum), 3) AS s, sum(moving_samples) AS moving,"
        " uniqMerge(drivers) AS drivers FROM cell_speed_hourly GROUP BY hour, h3_r7 ORDER BY hour, h3_r7",
    )
    cells_base = run_query(
        settings,
        "SELECT toStartOfHour(device_ts) AS hour, h3_r7, count() AS n,"
        " round(sum(toFloat64(derived_speed_mps)), 3) AS s, countIf(derived_speed_mps > 0.5) AS moving,"
        " uniq(toString(driver_id)) AS drivers FROM gps_pings FINAL"
        " WHERE derived_speed_mps IS NOT NULL AND NOT late GROUP BY hour, h3_r7 ORDER BY hour, h3_r7",
    )
    assert cells_view == cells_base and len(cells_view) > 3
