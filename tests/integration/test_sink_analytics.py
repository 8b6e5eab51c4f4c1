"""docs/ANALYTICS.md on real data: a simulated fleet through the worker, the other topics from a story.

Every query of the page is run through the sink's query endpoint and its answer checked against the
simulator's ground truth or the story's; the materialized views are checked against the same aggregates
recomputed from the base tables.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from statistics import mean
from typing import Any

import pytest

from base import topics
from base.settings import Settings
from simulator.model import SimConfig, simulate
from simulator.run import produce_to_kafka, write_truth
from sinks.query import run_query
from tests.analytics_data import Story, make_story
from tests.integration.sink_stack import SinkProcess, count, produce, wait_for
from tests.integration.stack import WorkerProcess, free_port

pytestmark = pytest.mark.integration
DOC = Path(__file__).resolve().parents[2] / "docs" / "ANALYTICS.md"
HOUR = 3_600_000
ACCEPT_TIMEOUT_S = 180


def doc_queries() -> dict[str, str]:
    """Return every named query of docs/ANALYTICS.md."""
    found = re.findall(r"<!-- query: (\w+) -->\n```sql\n(.*?)```", DOC.read_text(), flags=re.S)
    return dict(found)


def test_the_page_names_every_query_once() -> None:
    names = re.findall(r"<!-- query: (\w+) -->", DOC.read_text())
    assert len(names) == len(set(names)) == len(doc_queries()) >= 19


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
        check_chat_queries(settings, story)
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


def _day(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).date().isoformat()


def _ms(iso: str) -> int:
    """Return a time of an answer (UTC, with or without its offset) as epoch milliseconds."""
    return round(datetime.fromisoformat(iso).replace(tzinfo=UTC).timestamp() * 1000)


def check_chat_queries(settings: Settings, story: Story) -> None:
    check_conversations(settings, story)
    check_steps_and_failures(settings, story)
    check_offers(settings, story)
    check_volume(settings, story)
    check_guardrails(settings, story)


def check_volume(settings: Settings, story: Story) -> None:
    volume: dict[tuple[int, str, str], list[str]] = {}
    for line in story.lines:
        volume.setdefault((line.ts // HOUR * HOUR, line.direction, line.kind), []).append(line.number)
    rows = q(settings, "chat_volume_hourly", hours=48)
    assert {(_ms(r["hour"]), r["direction"], r["kind"]): (r["messages"], r["numbers"]) for r in rows} == {
        key: (len(numbers), len(set(numbers))) for key, numbers in volume.items()
    }
    assert count(settings, "SELECT count() FROM whatsapp_inbound WHERE from_hash LIKE '+%'") == 0


def check_guardrails(settings: Settings, story: Story) -> None:
    hits: dict[tuple[str, str, str], list[str]] = {}
    for hit in story.guardrails:
        hits.setdefault((_day(hit["ts"]), hit["reason"], hit["grade"]), []).append(hit["driver_id"])
    rows = q(settings, "guardrail_hits", days=2)
    assert {(r["day"], r["reason"], r["grade"]): (r["hits"], r["drivers"]) for r in rows} == {
        key: (len(drivers), len(set(drivers))) for key, drivers in hits.items()
    }
    assert rows[0]["grade"] == "block"  # the worst first
    flagged = q(settings, "guardrail_drivers", days=2)
    last = max((h for h in story.guardrails if h["driver_id"] == "chat-b"), key=lambda h: h["ts"])
    assert [(r["driver_id"], r["blocks"], r["warnings"], r["last_excerpt"]) for r in flagged] == [
        ("chat-b", 2, 1, last["excerpt"])
    ]  # chat-a's hits were only logged
    assert _ms(flagged[0]["last_hit"]) == last["ts"]


def check_conversations(settings: Settings, story: Story) -> None:
    for driver, number in story.numbers_of.items():
        lines = sorted((x for x in story.lines if x.number == number), key=lambda x: (x.ts, x.direction))
        days = sorted({_day(line.ts) for line in lines})  # one day, or two across midnight
        rows = [r for day in days for r in q(settings, "driver_conversation", driver_id=driver, day=day)]
        seen = [
            (_ms(r["ts"]), r["direction"], r["kind"], r["text"], r["step"], r["delivery_id"]) for r in rows
        ]
        assert seen == [(x.ts, x.direction, x.kind, x.text, x.step, x.delivery_id) for x in lines]
        # Neither the customer's message that names the driver nor a status callback from the driver's phone.
        assert {"delivery_picked_up", "status"}.isdisjoint(r["kind"] for r in rows)


def check_steps_and_failures(settings: Settings, story: Story) -> None:
    steps: dict[tuple[str, str], Counter[str]] = {}
    failures: dict[tuple[str, str], Counter[str]] = {}
    failing: dict[tuple[str, str], set[str]] = {}
    for step in story.steps:
        source = step["source"]
        steps.setdefault((_day(step["ts"]), step["type"]), Counter()).update(
            steps=1, from_chat=source == "whatsapp", from_api=source == "api"
        )
        if step["type"] == "failed":
            key = (step.get("failure_reason") or "unstated", source)
            failures.setdefault(key, Counter()).update(failures=1, with_proof=bool(step.get("proof_ref")))
            failing.setdefault(key, set()).add(step["driver_id"])

    rows = q(settings, "steps_by_source", days=2)
    assert {
        (r["day"], r["type"]): (r["steps"], r["from_chat"], r["from_api"], r["chat_share"]) for r in rows
    } == {
        key: (c["steps"], c["from_chat"], c["from_api"], round(c["from_chat"] / c["steps"], 3))
        for key, c in steps.items()
    }
    told = {r["type"] for r in rows if r["from_chat"]}
    assert told == {"accepted", "declined", "picked_up", "arrived", "delivered", "failed"}

    rows = q(settings, "failures_by_reason", days=2)
    assert {(r["reason"], r["source"]): (r["failures"], r["with_proof"], r["drivers"]) for r in rows} == {
        key: (c["failures"], c["with_proof"], len(failing[key])) for key, c in failures.items()
    }
    assert ("not_home", "whatsapp") in failures and ("not_home", "api") in failures


def check_offers(settings: Settings, story: Story) -> None:
    offers: dict[str, Counter[str]] = {}
    waits: dict[str, list[float]] = {}
    for offer in story.offers.values():
        answered = offer.waited_ms is not None
        offers.setdefault(offer.driver_id, Counter()).update(
            offers=1,
            accepted=offer.answer not in (None, "declined", "cancelled"),
            declined=offer.answer == "declined",
            unanswered=not answered,
            # Every offer of the story was made minutes before the query, so the unanswered one is late.
            late=not answered or (offer.waited_ms or 0) > ACCEPT_TIMEOUT_S * 1000,
        )
        if offer.waited_ms is not None:
            waits.setdefault(offer.driver_id, []).append(offer.waited_ms / 1000)
    rows = q(settings, "offers_per_driver", days=2, timeout_s=ACCEPT_TIMEOUT_S)
    columns = ("offers", "accepted", "declined", "unanswered", "not_answered_in_time", "avg_answer_s")
    assert {r["driver_id"]: tuple(r[k] for k in columns) for r in rows} == {
        driver: (
            c["offers"],
            c["accepted"],
            c["declined"],
            c["unanswered"],
            c["late"],
            round(mean(waits[driver]), 1),
        )
        for driver, c in offers.items()
    }
    assert [r["driver_id"] for r in rows[:2]] == ["chat-b", "chat-a"]  # who declined or kept offers waiting


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
