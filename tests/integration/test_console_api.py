"""The console's API on the real broker and Redis: fleet-wide queries over 2,000 drivers, incidents and their
acknowledgement seen by a second reader, sign-in with a TOTP code, roles, the audit trail, the push channel,
and a named 400 for every bad parameter."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h3
import httpx
import pyotp
import pytest
import redis.asyncio as aioredis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from base import topics
from base.settings import Settings
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.registry import Driver, Registry
from schemas.codecs import codec
from streams.console.feed import changelog_topic
from streams.deliveries.stall import OpenAlert
from streams.deliveries.state import Delivery, DriverState, LastFix
from tests.integration.console_stack import DISPATCH_KEY, PARTNER_KEY, ConsoleProcess, add_dispatcher
from tests.integration.stack import free_port, read_topic

DRIVERS = 2_000
NOW = int(time.time() * 1000)
CENTRE = (-23.5614, -46.6559)


def driver_state(i: int) -> DriverState:
    lat, lon = CENTRE[0] + (i % 40) * 0.01, CENTRE[1] + (i // 40 % 40) * 0.01
    cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 9))
    state = DriverState(last_fix=LastFix(NOW - 5_000, lat, lon, cell, 5.0, 7.0), last_update=NOW - 4_000)
    kind = ("offline", "stall", None, None)[i % 4]
    if kind:
        state.alerts[kind] = OpenAlert(f"{kind}-drv-{i:05d}", kind, NOW - 300_000, lat, lon, None)
    if i % 4 == 3:
        state.movement.still_since = NOW - 120_000
    if i % 10 == 0:
        promised = NOW + (60_000 if i % 20 == 0 else 3_600_000)
        state.deliveries[f"dlv-{i}"] = Delivery(
            f"dlv-{i}", "picked_up", (lat, lon), CENTRE, promised, None, NOW - 600_000, NOW, eta=NOW + 900_000
        )
    return state


def alert(i: int, kind: str = "stall") -> dict[str, Any]:
    return {
        "alert_id": f"{kind}-drv-{i:05d}",
        "kind": kind,
        "driver_id": f"drv-{i:05d}",
        "delivery_id": None,
        "started_at": NOW - 300_000,
        "detected_at": NOW - 1_000 * i,
        "lat": CENTRE[0],
        "lon": CENTRE[1],
        "h3_r9": 0,
        "severity": "warning",
        "detail": "",
    }


@pytest.fixture()
def console_env(stack_env: dict[str, str], stack_settings: Settings) -> dict[str, str]:
    env = {
        **stack_env,
        "WHATSUP_CONSOLE_PORT": str(free_port()),
        "WHATSUP_SINK_PORT": str(free_port()),  # no sink: the analytics routes answer 503
        "WHATSUP_API_KEYS": f"{DISPATCH_KEY}:dispatcher,{PARTNER_KEY}:partner",
    }
    settings = Settings.from_env(env)
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    compacted = NewTopic(
        changelog_topic(settings), settings.partitions, 1, config={"cleanup.policy": "compact"}
    )
    for future in admin.create_topics([compacted]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    for i in range(DRIVERS):
        key = f"drv-{i:05d}"
        producer.produce(changelog_topic(settings), driver_state(i).pack(), key.encode(), partition=i % 4)
    alerts = topics.qualified(topics.ALERTS, settings.topic_prefix)
    encode = codec("Alert").encode
    for i in range(0, 200, 2):
        producer.produce(alerts, encode(alert(i, ("stall", "offline")[i % 4 // 2])), f"drv-{i:05d}".encode())
    producer.flush(30)
    return env


@pytest.fixture()
def console(console_env: dict[str, str], tmp_path: Path) -> Iterator[ConsoleProcess]:
    process = ConsoleProcess(console_env, tmp_path / "console.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def sign_in(url: str, name: str, password: str, code: str) -> httpx.Client:
    client = httpx.Client(base_url=url, timeout=10)
    answer = client.post("/auth/login", json={"name": name, "password": password, "code": code})
    assert answer.status_code == 200, answer.text
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=Strict" in cookie
    # httpx keeps Secure cookies for https only; the browser test shows Chromium keeps it on loopback.
    client.cookies.set("whatsup_console", answer.cookies["whatsup_console"])
    return client


def get(url: str, path: str, key: str = DISPATCH_KEY, **params: str) -> httpx.Response:
    return httpx.get(f"{url}{path}", params=params, headers={"X-API-Key": key}, timeout=10)


def test_pages_walk_the_whole_fleet_and_filters_hold(console: ConsoleProcess) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        answer = get(console.url, "/v1/drivers", limit="300", **({"cursor": cursor} if cursor else {}))
        assert answer.status_code == 200, answer.text
        seen += answer.json()["drivers"]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    assert len({d["driver_id"] for d in seen}) == len(seen) == DRIVERS
    assert answer.json()["counts"] == {"offline": 500, "stalled": 500, "moving": 500, "idle": 500}
    order = ["offline", "stalled", "moving", "idle"]
    assert [d["status"] for d in seen] == sorted((d["status"] for d in seen), key=order.index)

    cell = seen[0]["cell"]
    here = get(console.url, "/v1/drivers", status="stalled,offline", cell=cell, limit="500").json()["drivers"]
    assert here and all(d["cell"] == cell and d["status"] in ("stalled", "offline") for d in here)
    assert {d["driver_id"] for d in get(console.url, "/v1/drivers", q="drv-0012").json()["drivers"]} == {
        f"drv-{i:05d}" for i in range(120, 130)
    }
    one = get(console.url, "/v1/drivers/drv-00003").json()
    assert one["status"] == "idle" and one["last_fix"]["lat"] == pytest.approx(CENTRE[0] + 0.03)

    late = get(console.url, "/v1/deliveries", late="true", limit="500").json()["deliveries"]
    assert {d["delivery_id"] for d in late} == {f"dlv-{i}" for i in range(0, DRIVERS, 20)}  # ETA past promise
    summary = get(console.url, "/v1/summary").json()
    assert summary["deliveries_late"] == DRIVERS // 20 and summary["alerts_open"] == 100


@pytest.mark.parametrize(
    ("path", "params", "param"),
    [
        ("/v1/drivers", {"status": "sleeping"}, "status"),
        ("/v1/drivers", {"cell": "nope"}, "cell"),
        ("/v1/drivers", {"limit": "501"}, "limit"),
        ("/v1/drivers", {"cursor": "garbage!"}, "cursor"),
        ("/v1/drivers", {"color": "red"}, "color"),
        ("/v1/alerts", {"state": "closed"}, "state"),
        ("/v1/alerts", {"kind": "stall_resolved"}, "kind"),
        ("/v1/alerts", {"since": "today"}, "since"),
        ("/v1/deliveries", {"late": "maybe"}, "late"),
        ("/v1/deliveries", {"status": "delivered"}, "status"),
    ],
)
def test_every_bad_parameter_is_a_400_naming_it(
    console: ConsoleProcess, path: str, params: dict[str, str], param: str
) -> None:
    answer = get(console.url, path, **params)
    assert answer.status_code == 400 and answer.json()["param"] == param, answer.text


def test_roles_are_enforced_and_every_answer_is_audited(
    console: ConsoleProcess, console_env: dict[str, str]
) -> None:
    assert httpx.get(f"{console.url}/v1/drivers", timeout=10).status_code == 401
    assert get(console.url, "/v1/drivers", key=PARTNER_KEY).status_code == 403
    assert get(console.url, "/v1/drivers", key="x" * 30).status_code == 401
    assert get(console.url, "/v1/drivers/drv-00001").status_code == 200
    settings = Settings.from_env(console_env)
    access = topics.qualified(topics.API_ACCESS, settings.topic_prefix)
    records = read_topic(settings, access, "ApiAccess", until=lambda found: len(found) >= 4)
    answers = sorted((r.value["route"], r.value["status"], r.value["location_read"]) for r in records)
    assert answers == [
        ("/v1/drivers", 401, False),
        ("/v1/drivers", 401, False),
        ("/v1/drivers", 403, False),
        ("/v1/drivers/{driver_id}", 200, True),
    ]
    assert next(r for r in records if r.value["status"] == 200).value["driver_id"] == "drv-00001"


def test_sign_in_needs_both_factors_once_and_throttles_guessing(
    console: ConsoleProcess, console_env: dict[str, str]
) -> None:
    password = "correct horse battery staple"
    secret = add_dispatcher(console_env, "ana", password)
    totp = pyotp.TOTP(secret)
    login = f"{console.url}/auth/login"
    wrong_code = f"{(int(totp.now()) + 1) % 1_000_000:06d}"
    assert (
        httpx.post(login, json={"name": "ana", "password": password, "code": wrong_code}).status_code == 401
    )
    assert (
        httpx.post(login, json={"name": "ana", "password": "nope" * 4, "code": totp.now()}).status_code == 401
    )
    code = totp.now()
    client = sign_in(console.url, "ana", password, code)
    assert client.get("/auth/session").json()["name"] == "ana"
    assert client.get("/v1/drivers", params={"limit": "5"}).status_code == 200  # no key: the session
    replayed = httpx.post(login, json={"name": "ana", "password": password, "code": code})
    assert replayed.status_code == 401  # a code works once
    for _ in range(3):
        httpx.post(login, json={"name": "ana", "password": "guess" * 4, "code": "000000"})
    throttled = httpx.post(login, json={"name": "ana", "password": password, "code": totp.now()})
    assert throttled.status_code == 429 and throttled.json()["error"] == "too_many_attempts"
    client.post("/auth/logout")
    assert client.get("/v1/drivers").status_code == 401
    client.close()


def test_an_acknowledgement_reaches_a_second_reader_and_the_topic(
    console: ConsoleProcess, console_env: dict[str, str]
) -> None:
    incidents = get(console.url, "/v1/alerts", state="open", kind="stall", limit="500").json()["alerts"]
    assert len(incidents) == 50 and incidents[0]["detected_at"] >= incidents[-1]["detected_at"]
    target = incidents[0]["alert_id"]
    secret = add_dispatcher(console_env, "caio", "a long enough password")
    with contextlib.closing(
        sign_in(console.url, "caio", "a long enough password", pyotp.TOTP(secret).now())
    ) as caio:
        acted = caio.post(f"/v1/alerts/{target}/ack", json={"note": "ligando"})
    assert acted.status_code == 200, acted.text
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # the second reader: a machine with a dispatcher key
        mine = get(console.url, "/v1/alerts", state="acknowledged").json()["alerts"]
        if mine:
            break
        time.sleep(0.1)
    assert [(a["alert_id"], a["acknowledged"]["by"], a["acknowledged"]["note"]) for a in mine] == [
        (target, "caio", "ligando")
    ]
    settings = Settings.from_env(console_env)
    actions = topics.qualified(topics.ALERT_ACTIONS, settings.topic_prefix)
    records = read_topic(settings, actions, "AlertAction", until=lambda found: len(found) >= 1)
    assert records[0].key == target.encode()
    assert (records[0].value["action"], records[0].value["by"]) == ("ack", "caio")
    resolved = httpx.post(
        f"{console.url}/v1/alerts/{target}/resolve", json={}, headers={"X-API-Key": DISPATCH_KEY}, timeout=10
    )
    assert resolved.status_code == 200
    wait_until = time.monotonic() + 10
    while (
        time.monotonic() < wait_until
        and get(console.url, "/v1/alerts", state="resolved").json()["alerts"] == []
    ):
        time.sleep(0.1)
    assert [a["alert_id"] for a in get(console.url, "/v1/alerts", state="resolved").json()["alerts"]] == [
        target
    ]
    bad = httpx.post(
        f"{console.url}/v1/alerts/{target}/ack", content=b"note=x", headers={"X-API-Key": DISPATCH_KEY}
    )
    assert bad.status_code == 415  # a form post (what a cross-site page could send) is refused
    missing = httpx.post(
        f"{console.url}/v1/alerts/nope/resolve", json={}, headers={"X-API-Key": DISPATCH_KEY}
    )
    assert missing.status_code == 404


def test_a_new_alert_is_pushed_to_an_open_stream_within_two_seconds(
    console: ConsoleProcess, console_env: dict[str, str]
) -> None:
    settings = Settings.from_env(console_env)
    received: list[tuple[str, dict[str, Any], float]] = []

    def listen() -> None:
        with httpx.stream(
            "GET", f"{console.url}/v1/stream", headers={"X-API-Key": DISPATCH_KEY}, timeout=30
        ) as s:
            event = ""
            for line in s.iter_lines():
                if line.startswith("event: "):
                    event = line[7:]
                elif line.startswith("data: ") and event == "alert":
                    received.append((event, json.loads(line[6:]), time.monotonic()))
                    return

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    time.sleep(1.0)  # the stream is open
    fresh = {
        **alert(1_999, "frozen_gps"),
        "alert_id": f"frozen_gps-{uuid.uuid4().hex[:8]}",
        "detected_at": NOW,
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap})
    sent = time.monotonic()
    producer.produce(
        topics.qualified(topics.ALERTS, settings.topic_prefix), codec("Alert").encode(fresh), b"drv-01999"
    )
    producer.flush(10)
    listener.join(10)
    assert received and received[0][1]["alert_id"] == fresh["alert_id"]
    assert received[0][2] - sent < 2.0


def test_a_dispatcher_messages_a_driver_through_the_sender_topic(
    console_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**console_env, "WHATSUP_PHONE_HASH_KEY": "k" * 32}
    settings = Settings.from_env(env)
    phone = "+5511955550042"

    async def register() -> None:
        client = aioredis.from_url(settings.redis_url)
        try:
            driver = Driver("drv-00042", phone, "active", "pt-BR")
            await Registry(client, settings.phone_hash_key or "", settings.topic_prefix).load([driver])
        finally:
            await client.aclose()

    asyncio.run(register())
    console = ConsoleProcess(env, tmp_path / "console.log")
    console.start()
    try:
        url, headers = console.url, {"X-API-Key": DISPATCH_KEY}
        sent = httpx.post(f"{url}/v1/drivers/drv-00042/message", json={"text": "Tudo bem?"}, headers=headers)
        assert sent.status_code == 200, sent.text
        unknown = httpx.post(f"{url}/v1/drivers/drv-00043/message", json={"text": "Oi"}, headers=headers)
        assert unknown.status_code == 404 and unknown.json()["error"] == "not_registered"
        empty = httpx.post(f"{url}/v1/drivers/drv-00042/message", json={"text": " "}, headers=headers)
        assert empty.status_code == 400 and empty.json()["param"] == "text"
    finally:
        console.stop()
    outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
    [record] = read_topic(settings, outbound, "OutboundMessage", until=lambda found: len(found) >= 1)
    message = record.value
    assert (message["to"], message["text"], message["reason"]) == (phone, "Tudo bem?", "dispatcher_message")
    assert message["to_hash"] == hash_phone(settings.phone_hash_key or "", phone) and message["template"]
    access = topics.qualified(topics.API_ACCESS, settings.topic_prefix)
    audited = read_topic(settings, access, "ApiAccess", until=lambda found: len(found) >= 3)
    assert sorted(r.value["status"] for r in audited) == [200, 400, 404]
    assert "+55" not in console.log_tail(200)  # the number is never logged


def test_a_session_ends_after_its_idle_timeout(console_env: dict[str, str], tmp_path: Path) -> None:
    env = {**console_env, "WHATSUP_CONSOLE_SESSION_IDLE_S": "2"}
    console = ConsoleProcess(env, tmp_path / "console.log")
    console.start()
    try:
        secret = add_dispatcher(env, "dora", "a long enough password")
        with contextlib.closing(
            sign_in(console.url, "dora", "a long enough password", pyotp.TOTP(secret).now())
        ) as dora:
            for _ in range(3):  # each request renews the idle timeout
                time.sleep(1.0)
                assert dora.get("/auth/session").status_code == 200
            time.sleep(3.0)
            assert dora.get("/auth/session").status_code == 401
            assert dora.get("/v1/drivers").status_code == 401
    finally:
        console.stop()
