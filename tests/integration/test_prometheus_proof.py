"""Alert rules and dashboards, proven on a real Prometheus scraping real processes under simulated traffic.

promtool checks the config and the rules and runs the rules' unit tests; then a Prometheus on loopback
scrapes a real worker while a simulated fleet posts through the ingest API, and every PromQL expression of
every dashboard panel and every alert rule is evaluated through its HTTP API: each must parse, refer only to
metrics the code exports, and (panels) return data.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.simulator.model import SimConfig, simulate
from connectors.simulator.run import post_through_api
from streams import topics
from streams.kafka import make_producer
from streams.settings import Settings
from tests.integration.promproof import (
    CLICKHOUSE_DATASOURCE,
    DASHBOARDS_DIR,
    PROMETHEUS_DATASOURCE,
    PROMETHEUS_DIR,
    Prometheus,
    Query,
    check_promql,
    dashboard_queries,
    iter_rules,
    promtool,
    rule_queries,
)
from tests.integration.stack import WorkerProcess

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))


@pytest.fixture()
def stack_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The test's environment, with gauges sampled every second and JSON logs."""
    return {**stack_env, "WHATSUP_METRICS_SAMPLE_S": "1", "WHATSUP_LOG_FORMAT": "json"}


@pytest.fixture()
def prometheus(worker: WorkerProcess, tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping this test's worker every second, with the project's alert rules."""
    server = Prometheus(tmp_path / "prometheus", {"whatsup-worker": [worker.url.removeprefix("http://")]})
    server.workdir.mkdir()
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_promtool_accepts_the_config_and_rules_and_their_unit_tests_pass() -> None:
    assert RULE_FILES and RULE_TESTS
    checked = promtool("check", "config", PROMETHEUS_DIR / "prometheus.yml")
    assert checked.returncode == 0, checked.stdout + checked.stderr
    checked = promtool("check", "rules", *RULE_FILES)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    tested = promtool("test", "rules", *RULE_TESTS)
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_rule_unit_tests_catch_a_loosened_threshold(tmp_path: Path) -> None:
    # Negative control: the unit tests would notice if the 5% error-rate threshold became 50%.
    shutil.copytree(PROMETHEUS_DIR / "rules", tmp_path / "rules")
    shutil.copytree(PROMETHEUS_DIR / "tests", tmp_path / "tests")
    rules = tmp_path / "rules" / "whatsup.yml"
    original = rules.read_text()
    assert "> 0.05" in original
    rules.write_text(original.replace("> 0.05", "> 0.5"))
    tested = promtool("test", "rules", *sorted((tmp_path / "tests").glob("*.yml")))
    assert tested.returncode != 0
    assert "WhatsUpIngestErrorRateHigh" in tested.stdout + tested.stderr


def _post_fleet(settings: Settings, url: str, errors: list[BaseException]) -> None:
    runs = simulate(
        SimConfig(drivers=20, minutes=10, end_ms=int(time.time() * 1000), seed=3, driver_prefix="obs")
    )
    assert settings.token_secret is not None
    try:
        asyncio.run(post_through_api(runs, url, settings.token_secret))
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)


def test_every_panel_and_alert_rule_evaluates_on_a_real_prometheus(
    stack_settings: Settings, worker: WorkerProcess, prometheus: Prometheus
) -> None:
    errors: list[BaseException] = []
    traffic = threading.Thread(target=_post_fleet, args=(stack_settings, worker.url, errors))
    traffic.start()
    # Data while the traffic flows: clean pings judged, latency observed, lag sampled, tables sized.
    prometheus.wait_for('whatsup_pings_received_total{stage="clean"} > 0')
    prometheus.wait_for('whatsup_consumer_lag_messages{topic="gps.pings.raw"}')
    traffic.join(timeout=120)
    assert not traffic.is_alive() and errors == []
    # A few more scrapes, so every rate has points on both sides of the traffic.
    prometheus.wait_for('count_over_time(up{job="whatsup-worker"}[1m]) > 5')

    panels = dashboard_queries(DASHBOARDS)
    promql_panels = [q for q in panels if q.datasource == PROMETHEUS_DATASOURCE]
    assert {q.datasource for q in panels} <= {PROMETHEUS_DATASOURCE, CLICKHOUSE_DATASOURCE}
    assert len(promql_panels) >= 15 and all(q.text for q in panels)
    assert check_promql(prometheus, promql_panels, need_data=True) == []

    rules = rule_queries(RULE_FILES)
    assert len(rules) >= 6
    assert check_promql(prometheus, rules, need_data=False) == []
    # Prometheus itself evaluates the rules from the same files: each is loaded and healthy.
    loaded = {rule["name"]: rule for rule in iter_rules(prometheus)}
    assert set(loaded) == {q.where.split(": ", 1)[1] for q in rules}
    deadline = time.monotonic() + 30
    while any(rule.get("lastEvaluation", "").startswith("0001") for rule in loaded.values()):
        assert time.monotonic() < deadline, "rules never evaluated"
        time.sleep(0.5)
        loaded = {rule["name"]: rule for rule in iter_rules(prometheus)}
    assert {name: rule["health"] for name, rule in loaded.items() if rule["health"] != "ok"} == {}
    # Healthy traffic pages nobody.
    assert prometheus.query('ALERTS{alertstate="firing",severity="page"}')["data"]["result"] == []

    # Negative controls: a panel on a metric the code does not export, and one that does not parse, fail.
    bogus = [
        Query("bogus: unexported", PROMETHEUS_DATASOURCE, "sum(rate(whatsup_pings_teleported_total[1m]))"),
        Query("bogus: unparsable", PROMETHEUS_DATASOURCE, "sum(rate(whatsup_pings_received_total[1m])"),
        Query("bogus: empty", PROMETHEUS_DATASOURCE, 'whatsup_pings_received_total{stage="nowhere"}'),
    ]
    problems = check_promql(prometheus, bogus, need_data=True)
    assert len(problems) == 3
    assert "no process exports whatsup_pings_teleported_total" in problems[0]
    assert "bad_data" in problems[1]
    assert problems[2].endswith("no data")


def test_worker_logs_are_json_lines_with_record_context_and_no_token(
    stack_settings: Settings, worker: WorkerProcess
) -> None:
    errors: list[BaseException] = []
    _post_fleet(stack_settings, worker.url, errors)
    assert errors == []
    # A record the clean stage cannot decode is logged with where it came from and why it was rejected.
    raw_topic = topics.qualified(topics.GPS_PINGS_RAW, stack_settings.topic_prefix)
    producer = make_producer(stack_settings)
    producer.produce(raw_topic, key=b"obs-bad", value=b"not avro at all")
    assert producer.flush(10) == 0
    deadline = time.monotonic() + 60
    while '"reason": "malformed"' not in worker.log_path.read_text():
        assert time.monotonic() < deadline, worker.log_tail()
        time.sleep(0.5)
    worker.stop()

    lines = worker.log_path.read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(record) for record in records)
    malformed = [record for record in records if record.get("reason") == "malformed"]
    assert len(malformed) == 1
    assert malformed[0]["level"] == "warning"
    assert malformed[0]["stage"] == "clean" and malformed[0]["topic"] == raw_topic
    assert isinstance(malformed[0]["partition"], int) and isinstance(malformed[0]["offset"], int)
    text = "\n".join(lines)
    assert "eyJ" not in text and "Bearer" not in text
    assert stack_settings.token_secret is not None and stack_settings.token_secret not in text
