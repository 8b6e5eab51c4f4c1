"""Delivery tracking on the real broker: the events API and dispatcher API of a real worker, and a scripted
driver day that yields exactly the expected alerts, also across a SIGKILL of the worker in a stall.

The day is run in real time with short rules (12 s stall window, 9 s offline) so it fits in a test.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import h3
import httpx
import pytest

from base import topics
from base.apikeys import fingerprint
from base.kafka import make_producer
from base.settings import Settings
from demos import deliveries as deliveries_demo
from schemas.codecs import codec
from streams.deliveries.stall import M_PER_DEG_LAT
from tests.integration.stack import Background, Record, WorkerProcess, read_topic

INGEST, DISPATCH, PARTNER_A, PARTNER_B = (
    "ingest-" + "k" * 16,
    "disp-" + "k" * 16,
    "pa-" + "k" * 16,
    "pb-" + "k" * 16,
)
API_KEYS = f"{INGEST}:ingest,{DISPATCH}:dispatcher,{PARTNER_A}:partner,{PARTNER_B}:partner"
FAST_RULES = {
    "WHATSUP_API_KEYS": API_KEYS,
    "WHATSUP_STALL_MINUTES": "0.2",
    "WHATSUP_STALL_STEP_S": "2",
    "WHATSUP_STALL_GRACE_S": "1",
    "WHATSUP_STALL_HORIZON_MINUTES": "0.5",
    "WHATSUP_OFFLINE_MINUTES": "0.15",
    "WHATSUP_TICK_INTERVAL_S": "0.5",
    # A SIGKILLed member leaves the group after this long; Faust's default (60 s) would idle the test.
    "BROKER_SESSION_TIMEOUT": "10",
    "BROKER_HEARTBEAT_INTERVAL": "1",
}
START = (-23.55, -46.63)
DROPOFF = (-23.50, -46.63)
PICKUP = (-23.60, -46.70)


@pytest.fixture()
def delivery_worker(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> Iterator[WorkerProcess]:
    """A worker with API keys and fast movement rules."""
    process = WorkerProcess({**stack_env, **FAST_RULES}, tmp_path / "worker.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def post(worker: WorkerProcess, key: str | None, body: Any) -> httpx.Response:
    headers = {"X-API-Key": key} if key else {}
    return httpx.post(f"{worker.url}/v1/deliveries/events", json=body, headers=headers, timeout=10)


def get(worker: WorkerProcess, path: str, key: str | None) -> httpx.Response:
    return httpx.get(f"{worker.url}{path}", headers={"X-API-Key": key} if key else {}, timeout=10)


def event(
    driver: str, delivery: str, kind: str, n: int, dropoff: tuple[float, float] = DROPOFF
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "event_id": f"{delivery}-{n}",
        "delivery_id": delivery,
        "driver_id": driver,
        "type": kind,
        "ts": int(time.time() * 1000),
    }
    if kind == "assigned":
        body.update(
            pickup_lat=PICKUP[0], pickup_lon=PICKUP[1], dropoff_lat=dropoff[0], dropoff_lon=dropoff[1]
        )
        body.update(promised_at=int(time.time() * 1000) + 3 * 3_600_000, customer_ref="cust-1")
    return body


def poll(fetch: Callable[[], Any], ok: Callable[[Any], bool], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = fetch()
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.3)


def test_events_and_dispatcher_api_answer_by_role_and_every_read_is_audited(
    stack_settings: Settings, delivery_worker: WorkerProcess
) -> None:
    driver = f"api-{uuid.uuid4().hex[:6]}"
    assign = event(driver, "dlv-a", "assigned", 1)
    assert post(delivery_worker, None, assign).status_code == 401
    assert post(delivery_worker, "x" * 20, assign).json()["error"] == "bad_api_key"
    assert post(delivery_worker, DISPATCH, assign).json()["error"] == "forbidden_role"
    bad = post(delivery_worker, INGEST, {**assign, "type": "teleported"})
    assert bad.status_code == 400 and bad.headers["X-Bad-Field"] == "event.type"
    accepted = post(delivery_worker, PARTNER_A, {"events": [assign, event(driver, "dlv-a", "picked_up", 2)]})
    assert accepted.status_code == 202 and accepted.json() == {
        "accepted": 2,
        "event_ids": ["dlv-a-1", "dlv-a-2"],
    }
    # Impossible and unknown: accepted by the API (well-formed), dead-lettered by the state machine.
    wrong = [event(driver, "dlv-a", "assigned", 3), event(driver, "dlv-zzz", "delivered", 4)]
    assert post(delivery_worker, INGEST, {"events": wrong}).status_code == 202
    # A partner may not move another partner's delivery: accepted, then dead-lettered, never applied.
    assert post(delivery_worker, PARTNER_B, event(driver, "dlv-a", "cancelled", 5)).status_code == 202

    driver_path = f"/v1/drivers/{driver}"
    answer = poll(
        lambda: get(delivery_worker, driver_path, DISPATCH),
        lambda r: r.status_code == 200 and r.json()["active_deliveries"][0]["status"] == "picked_up",
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["status"] == "on_delivery" and body["last_fix"] is None and body["open_alerts"] == []
    assert body["active_deliveries"][0]["dropoff"] == {"lat": DROPOFF[0], "lon": DROPOFF[1]}
    assert get(delivery_worker, driver_path, None).status_code == 401
    assert get(delivery_worker, driver_path, PARTNER_A).status_code == 403  # partners never see a driver
    assert get(delivery_worker, "/v1/drivers/nobody", DISPATCH).status_code == 404

    mine = get(delivery_worker, "/v1/deliveries/dlv-a", PARTNER_A)
    assert (
        mine.status_code == 200
        and mine.json()["driver_id"] == driver
        and mine.json()["status"] == "picked_up"
    )
    assert get(delivery_worker, "/v1/deliveries/dlv-a", PARTNER_B).status_code == 404  # not theirs
    assert get(delivery_worker, "/v1/deliveries/dlv-a", DISPATCH).status_code == 200
    history = get(delivery_worker, "/v1/deliveries/dlv-a/history", DISPATCH)
    assert history.status_code == 503 and history.json()["error"] == "history_unavailable"

    prefix = stack_settings.topic_prefix
    rejected = read_topic(
        stack_settings,
        topics.qualified(topics.DELIVERIES_REJECTED, prefix),
        "RejectedDeliveryEvent",
        until=lambda records: len(records) >= 3,
    )
    assert sorted((r.value["reason"], r.value["event_id"]) for r in rejected) == [
        ("already_assigned", "dlv-a-3"),
        ("not_owner", "dlv-a-5"),
        ("unknown_delivery", "dlv-zzz-4"),
    ]
    assert get(delivery_worker, "/v1/deliveries/dlv-a", PARTNER_A).json()["status"] == "picked_up"
    access = read_topic(
        stack_settings,
        topics.qualified(topics.API_ACCESS, prefix),
        "ApiAccess",
        until=lambda records: len(records) >= 9,
    )
    driver_reads = [r.value for r in access if r.value["route"] == "/v1/drivers/{driver_id}"]
    assert {(r["status"], r["principal"]) for r in driver_reads} >= {
        (200, fingerprint(DISPATCH)),
        (401, "anonymous"),
        (403, fingerprint(PARTNER_A)),
    }
    keys = (INGEST, DISPATCH, PARTNER_A, PARTNER_B)
    assert not any(key in str(r.value) for r in access for key in keys), "a key leaked into the audit trail"


def test_a_restarted_worker_answers_503_until_its_state_is_recovered_never_a_wrong_404(
    delivery_worker: WorkerProcess,
) -> None:
    driver = f"rec-{uuid.uuid4().hex[:6]}"
    assert post(delivery_worker, INGEST, event(driver, "dlv-r", "assigned", 1)).status_code == 202
    driver_path = f"/v1/drivers/{driver}"
    known = poll(lambda: get(delivery_worker, driver_path, DISPATCH), lambda r: r.status_code == 200)
    assert known.status_code == 200, known.text
    delivery_worker.stop()

    delivery_worker.start()  # returns as soon as the web server answers, before the group is joined
    answers: list[httpx.Response] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        answers.append(get(delivery_worker, driver_path, DISPATCH))
        answers.append(get(delivery_worker, "/v1/deliveries/dlv-r", DISPATCH))
        if answers[-2].status_code == answers[-1].status_code == 200:
            break
        time.sleep(0.05)
    statuses = [a.status_code for a in answers]
    assert statuses[-2:] == [200, 200], statuses
    assert set(statuses) <= {200, 503}, f"a wrong answer while recovering: {statuses}"
    recovering = [a for a in answers if a.status_code == 503]
    assert recovering, "the worker answered 200 at once: the recovery window was not observed"
    assert all(
        a.json()["error"] == "state_recovering" and a.headers["Retry-After"] == "1" for a in recovering
    )
    # Once settled, a driver nobody has seen is still a plain 404.
    assert get(delivery_worker, "/v1/drivers/nobody", DISPATCH).status_code == 404


class ScriptedPhone(Background):
    """A phone sending a clean ping every half second in real time, as the test steers it."""

    def __init__(self, settings: Settings, driver: str) -> None:
        super().__init__()
        self.settings, self.driver = settings, driver
        self.mode, self.lat, self.lon = "moving", *START
        self.sent = 0

    def _run(self) -> None:
        producer = make_producer(self.settings)
        topic = topics.qualified(topics.GPS_PINGS_CLEAN, self.settings.topic_prefix)
        clean = codec("CleanPing")
        while not self._stop.wait(0.5):
            if self.mode == "silent":
                continue
            if self.mode == "moving":
                self.lat += 10 / M_PER_DEG_LAT  # 20 m/s
            elif self.mode == "dropoff":
                self.lat, self.lon = DROPOFF
            now = int(time.time() * 1000)
            jitter = (self.sent % 3 - 1) * 3 / M_PER_DEG_LAT
            lat = self.lat + (0 if self.mode == "moving" else jitter)
            self.sent += 1
            record = {
                "ping_id": f"{self.driver}:{self.sent}",
                "driver_id": self.driver,
                "device_ts": now,
                "lat": lat,
                "lon": self.lon,
                "accuracy_m": 5.0,
                "speed_mps": 20.0 if self.mode == "moving" else 0.0,
                "received_ts": now,
                "h3_r9": int(h3.latlng_to_cell(lat, self.lon, 9), 16),
                "h3_r7": int(h3.latlng_to_cell(lat, self.lon, 7), 16),
                "step_m": 0.0,
                "processed_ts": now,
            }
            producer.produce(topic, key=self.driver.encode(), value=clean.encode(record))
            producer.poll(0)
        producer.flush(10)


def test_a_scripted_day_yields_exactly_the_expected_alerts_across_a_kill_9_in_a_stall(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    driver = f"day-{uuid.uuid4().hex[:6]}"
    alerts_topic = topics.qualified(topics.ALERTS, stack_settings.topic_prefix)
    seen: list[Record] = []

    def alerts_until(kind: str, count: int, timeout_s: float = 40.0) -> list[dict[str, Any]]:
        records = read_topic(
            stack_settings,
            alerts_topic,
            "Alert",
            until=lambda rs: sum(r.value["kind"] == kind for r in rs) >= count,
            timeout_s=timeout_s,
        )
        seen[:] = records
        found = [r.value["kind"] for r in records]
        assert found.count(kind) >= count, f"waited for {count} {kind}, got {found}"
        return [r.value for r in records]

    worker = WorkerProcess({**stack_env, **FAST_RULES}, tmp_path / "worker.log")
    worker.start()
    try:
        with ScriptedPhone(stack_settings, driver) as phone:
            assert post(worker, INGEST, {"events": [event(driver, "d1", "assigned", 1)]}).status_code == 202
            assert post(worker, INGEST, event(driver, "d1", "picked_up", 2)).status_code == 202
            time.sleep(6)
            phone.mode = "standing"  # a stop in the middle of the street
            alerts_until("stall", 1)
            phone.mode = "moving"
            alerts_until("stall_resolved", 1)
            time.sleep(3)
            phone.mode = "dropoff"  # waiting at the customer's door: no stall
            time.sleep(16)
            for n, (delivery, kind) in enumerate(
                [("d1", "delivered"), ("d2", "assigned"), ("d2", "picked_up")]
            ):
                # The next customer lives elsewhere: the old door is no geofence any more.
                step = event(driver, delivery, kind, 10 + n, dropoff=PICKUP)
                assert post(worker, INGEST, step).status_code == 202
            phone.mode = "moving"
            time.sleep(4)
            phone.mode = "silent"  # a tunnel, a dead battery
            alerts_until("offline", 1)
            phone.mode = "moving"
            alerts_until("offline_resolved", 1)
            time.sleep(3)
            phone.mode = "standing"
            alerts_until("stall", 2)
            worker.kill()  # SIGKILL in the middle of the stall; the phone keeps sending
            worker.start()
            answer = poll(
                lambda: get(worker, f"/v1/drivers/{driver}", DISPATCH),
                lambda r: r.status_code == 200 and r.json()["status"] == "stalled",
                timeout_s=60,
            )
            assert answer.json()["status"] == "stalled", answer.text
            time.sleep(3)
            phone.mode = "moving"
            alerts_until("stall_resolved", 2)
            # Delivered while still sending: a phone that then goes quiet is nobody's concern.
            assert post(worker, INGEST, event(driver, "d2", "delivered", 20)).status_code == 202
            time.sleep(4)  # anything wrongly raised after the resolution has time to show up
        final = alerts_until("stall_resolved", 2, timeout_s=5)
    finally:
        worker.stop()

    first_copies: dict[str, dict[str, Any]] = {}
    for alert in final:
        # At-least-once: a resend after the kill must repeat the same record, never a new episode.
        assert first_copies.setdefault(alert["alert_id"], alert) == alert
    episodes = [(a["kind"], a["delivery_id"]) for a in first_copies.values()]
    assert episodes == [
        ("stall", "d1"),
        ("stall_resolved", "d1"),
        ("offline", "d2"),
        ("offline_resolved", "d2"),
        ("stall", "d2"),
        ("stall_resolved", "d2"),
    ], f"alerts: {episodes}\n{worker.log_tail()}"
    assert all(a["driver_id"] == driver for a in final)


def test_with_two_workers_every_driver_and_delivery_is_answered_by_either(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    from tests.integration.stack import free_port

    workers = [
        WorkerProcess(
            {**stack_env, **FAST_RULES, "WHATSUP_WEB_PORT": str(free_port())}, tmp_path / f"w{i}.log"
        )
        for i in range(2)
    ]
    drivers = [f"two-{uuid.uuid4().hex[:4]}-{i}" for i in range(8)]
    try:
        for worker in workers:
            worker.start()
        events = [event(d, f"{d}-order", "assigned", 1) for d in drivers]
        assert post(workers[0], INGEST, {"events": events}).status_code == 202

        def all_answered() -> bool:
            return all(
                get(w, f"/v1/drivers/{d}", DISPATCH).status_code == 200
                and get(w, f"/v1/deliveries/{d}-order", DISPATCH).json().get("driver_id") == d
                for w in workers
                for d in drivers
            )

        assert poll(all_answered, bool, timeout_s=60), "some driver was not answered by both workers"
        routed = sum(
            float(line.split()[-1])
            for w in workers
            for line in httpx.get(f"{w.url}/metrics", timeout=10).text.splitlines()
            if line.startswith("whatsup_deliveries_api_routed_total{")
        )
        assert routed > 0, "with two workers some answers must come from the other one"
    finally:
        for worker in workers:
            worker.stop()


def test_history_comes_from_clickhouse_through_the_sink(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    from tests.integration.sink_stack import SinkProcess
    from tests.integration.stack import free_port

    env = {
        **stack_env,
        **FAST_RULES,
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_SINK_PORT": str(free_port()),
        "WHATSUP_SINK_FLUSH_INTERVAL_S": "0.2",
    }
    sink, worker = SinkProcess(env, tmp_path / "sink.log"), WorkerProcess(env, tmp_path / "worker.log")
    driver = f"hist-{uuid.uuid4().hex[:6]}"
    try:
        sink.start()
        worker.start()
        with ScriptedPhone(stack_settings, driver):
            assert post(worker, INGEST, event(driver, "h1", "assigned", 1)).status_code == 202
            time.sleep(2)
            assert post(worker, INGEST, event(driver, "h1", "picked_up", 2)).status_code == 202
            time.sleep(2)
        answer = poll(
            lambda: get(worker, "/v1/deliveries/h1/history", DISPATCH),
            lambda r: r.status_code == 200 and len(r.json()["events"]) == 2 and r.json()["positions"],
            timeout_s=60,
        )
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert [e["type"] for e in body["events"]] == ["assigned", "picked_up"]
        assert body["driver_id"] == driver and len(body["positions"]) >= 2
        assert get(worker, "/v1/deliveries/nope/history", DISPATCH).status_code == 404
        assert get(worker, "/v1/deliveries/h1/history", PARTNER_B).status_code == 404  # not its delivery
    finally:
        worker.stop()
        sink.stop()


def test_the_demo_step_shows_one_stall_its_late_risk_and_no_stall_from_a_late_upload(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**stack_env, "WHATSUP_API_KEYS": API_KEYS}
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        assert deliveries_demo.show(Settings.from_env(env))
    finally:
        worker.stop()
    shown = capsys.readouterr().out
    assert "('stall', " in shown and "('late_risk', " in shown and "already_assigned" in shown
    assert INGEST not in shown and DISPATCH not in shown  # keys are never printed
