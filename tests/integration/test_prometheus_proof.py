"""Alert rules and dashboards, proven on a real Prometheus scraping real processes under simulated traffic.

promtool checks the config and the rules and runs the rules' unit tests; then a Prometheus on loopback
scrapes a real worker while a simulated fleet posts through the ingest API, and every PromQL expression of
every dashboard panel and every alert rule is evaluated through its HTTP API: each must parse, refer only to
metrics the code exports, and (panels) return data.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from simulator.deliveries import DeliverySimConfig, simulate_deliveries
from simulator.deliveries_run import play
from simulator.model import SimConfig, simulate
from simulator.run import post_through_api
from tests.integration.promproof import (
    CLICKHOUSE_DATASOURCE,
    DASHBOARDS_DIR,
    PROMETHEUS_DATASOURCE,
    PROMETHEUS_DIR,
    Prometheus,
    Query,
    check_promql,
    check_sql,
    dashboard_queries,
    iter_rules,
    promtool,
    rule_queries,
)
from tests.integration.sender_stack import ServiceProcess, outbound, produce_outbound, sender_env
from tests.integration.sink_stack import SinkProcess
from tests.integration.stack import WorkerProcess, free_port

# Movement rules shrunk so a one-minute fleet stalls and completes deliveries; API keys with an ingest key.
from tests.integration.test_deliveries_on_broker import FAST_RULES
from tests.integration.test_deliveries_on_broker import INGEST as INGEST_KEY

RULE_FILES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
RULE_TESTS = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
DASHBOARDS = sorted(DASHBOARDS_DIR.glob("*.json"))


@pytest.fixture()
def stack_env(stack_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    """One environment for every process of the stack: gauges sampled every second, JSON logs, fast
    movement rules, an embedded ClickHouse, the Meta sandbox calling back the worker's webhook."""
    worker_webhook = f"http://127.0.0.1:{stack_env['WHATSUP_WEB_PORT']}/webhooks/whatsapp"
    return sender_env(
        {**stack_env, **FAST_RULES},
        WHATSUP_METRICS_SAMPLE_S="1",
        WHATSUP_LOG_FORMAT="json",
        WHATSUP_LOG_LEVEL="INFO",
        WHATSUP_SANDBOX_CALLBACK_URL=worker_webhook,
        WHATSUP_PHONE_HASH_KEY=secrets.token_hex(16),
        WHATSUP_CLICKHOUSE_URL=f"chdb://{tmp_path / 'clickhouse'}",
        WHATSUP_SINK_PORT=str(free_port()),
    )


@pytest.fixture()
def services(stack_env: dict[str, str], worker: WorkerProcess, tmp_path: Path) -> Iterator[dict[str, str]]:
    """The sink, the Meta sandbox and the sender next to the worker; yields each job's scrape target."""
    sink = SinkProcess(stack_env, tmp_path / "sink.log")
    sandbox = ServiceProcess(stack_env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
    sender = ServiceProcess(stack_env, tmp_path / "sender.log", "sender", "WHATSUP_SENDER_METRICS_PORT")
    started: list[WorkerProcess] = []
    try:
        for process in (sink, sandbox, sender):
            process.start()
            started.append(process)
        yield {
            "whatsup-worker": worker.url.removeprefix("http://"),
            "whatsup-sink": sink.url.removeprefix("http://"),
            "whatsup-sender": sender.url.removeprefix("http://"),
        }
    finally:
        for process in reversed(started):
            process.stop()


@pytest.fixture()
def prometheus(services: dict[str, str], tmp_path: Path) -> Iterator[Prometheus]:
    """A real Prometheus scraping the stack every second, with the project's alert rules."""
    server = Prometheus(tmp_path / "prometheus", {job: [target] for job, target in services.items()})
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


def _play_delivery_fleet(settings: Settings, errors: list[BaseException]) -> None:
    """A minute of drivers doing short deliveries, in real time: stalls, ETAs, arrivals."""
    config = DeliverySimConfig(
        drivers=8,
        minutes=1.0,
        interval_s=2.0,
        start_ms=int(time.time() * 1000),
        pickup_m=(40.0, 80.0),
        dropoff_m=(40.0, 80.0),
        inject_after_m=(20.0, 30.0),
        stall_minutes=0.2,
        offline_minutes=0.15,
        light_s=(2.0, 4.0),
        frozen_s=(8.0, 12.0),
        radius_m=2000.0,
        weights=(0.5, 0.5, 0, 0, 0, 0, 0, 0),
        driver_prefix="obsd",
    )
    try:
        play(simulate_deliveries(config), settings)
    except BaseException as exc:  # surfaced by the test thread
        errors.append(exc)


def _send_whatsapp_and_a_delivery_event(settings: Settings, url: str) -> None:
    """Messages for the sender, and a delivery event through the API (its routes have metrics too)."""
    produce_outbound(settings, [outbound(f"obs-msg-{i}", f"+55119{i:08d}") for i in range(30)])
    body = {
        "event_id": "obs-api-1",
        "delivery_id": "obs-api-d1",
        "driver_id": "obs-api-driver",
        "type": "assigned",
        "ts": int(time.time() * 1000),
        "pickup_lat": -23.55,
        "pickup_lon": -46.63,
        "dropoff_lat": -23.56,
        "dropoff_lon": -46.64,
    }
    headers = {"X-API-Key": INGEST_KEY}
    answer = httpx.post(f"{url}/v1/deliveries/events", json=body, headers=headers, timeout=10)
    assert answer.status_code == 202, answer.text


def test_every_panel_and_alert_rule_evaluates_on_a_real_prometheus(
    stack_settings: Settings, worker: WorkerProcess, prometheus: Prometheus
) -> None:
    errors: list[BaseException] = []
    traffic = [
        threading.Thread(target=_post_fleet, args=(stack_settings, worker.url, errors)),
        threading.Thread(target=_play_delivery_fleet, args=(stack_settings, errors)),
    ]
    for thread in traffic:
        thread.start()
    _send_whatsapp_and_a_delivery_event(stack_settings, worker.url)
    # Data while the traffic flows: clean pings judged, latency observed, lag sampled, tables sized.
    prometheus.wait_for('whatsup_pings_received_total{stage="clean"} > 0')
    prometheus.wait_for('whatsup_consumer_lag_messages{topic="gps.pings.raw"}')
    for thread in traffic:
        thread.join(timeout=150)
    assert not any(thread.is_alive() for thread in traffic) and errors == []
    # The stack has done its work: deliveries arrived, messages sent, rows written.
    late_series = (
        "whatsup_eta_error_seconds_count",
        'whatsup_whatsapp_sends_total{outcome="sent"}',
        "whatsup_sink_rows_total",
        "whatsup_alerts_raised_total",
    )
    for series in late_series:
        prometheus.wait_for(f"{series} > 0")
    # A few more scrapes of each series that appeared late (a counter is born at its first increment),
    # so every rate has points on both sides of the traffic.
    for series in late_series:
        prometheus.wait_for(f"count_over_time({series}[1m]) > 5")

    panels = dashboard_queries(DASHBOARDS)
    promql_panels = [q for q in panels if q.datasource == PROMETHEUS_DATASOURCE]
    assert {q.datasource for q in panels} <= {PROMETHEUS_DATASOURCE, CLICKHOUSE_DATASOURCE}
    assert len(promql_panels) >= 15 and all(q.text for q in panels)
    problems = check_promql(prometheus, promql_panels, need_data=True)
    assert problems == [], "\n".join(problems)

    rules = rule_queries(RULE_FILES)
    assert len(rules) >= 6
    problems = check_promql(prometheus, rules, need_data=False)
    assert problems == [], "\n".join(problems)
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

    # The business dashboard's SQL runs on the sink's embedded ClickHouse, against the migrated schema.
    sql_panels = [q for q in panels if q.datasource == CLICKHOUSE_DATASOURCE]
    assert len(sql_panels) >= 3
    problems = check_sql(stack_settings, sql_panels)
    assert problems == [], "\n".join(problems)
    bad_sql = [
        Query("bogus: no such column", CLICKHOUSE_DATASOURCE, "SELECT teleported FROM delivery_events")
    ]
    assert "teleported" in check_sql(stack_settings, bad_sql)[0]

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
