"""WhatsApp on a real worker, broker and Redis.

Signed webhooks land normalized on whatsapp.events.raw once and forgeries land nothing; a registered
driver's messages are answered from the dispatcher API's view (served here by a local stand-in with the
documented JSON); quick replies and locations become pipeline records; an alert becomes one message.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.kafka import DeliveringProducer, create_topics
from base.settings import Settings
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.signatures import meta_signature, twilio_signature
from demos import whatsapp_inbound as inbound_demo
from schemas.codecs import codec
from tests.integration.stack import ROOT, WorkerProcess, read_topic
from tests.whatsapp_payloads import (
    DRIVER_PHONE,
    body_of,
    location_message,
    meta_notification,
    meta_status,
    text_message,
)

INTERNAL_KEY = "internal-key-0123456789"


@pytest.fixture()
def dispatcher_api() -> Iterator[tuple[str, list[str]]]:
    """A local stand-in for ``GET /v1/drivers/{id}``: the contract's JSON for driver d1; keys it was sent."""
    seen_keys: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen_keys.append(self.headers.get("X-API-Key", ""))
            if self.path != "/v1/drivers/d1":
                self.send_response(404)
                self.end_headers()
                return
            body = json.dumps(DRIVER_STATE).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", seen_keys
    finally:
        server.shutdown()
        server.server_close()


DRIVER_STATE = {
    "driver_id": "d1",
    "status": "on_delivery",
    "last_fix": {"lat": -23.56, "lon": -46.65, "ts": 1_763_870_000_000, "h3_r9": 6177331, "accuracy_m": 8.0},
    "last_update": 1_763_870_000_000,
    "active_deliveries": [
        {"delivery_id": "D-1001", "status": "en_route", "pickup": {"lat": -23.5, "lon": -46.6},
         "dropoff": {"lat": -23.6, "lon": -46.7}, "promised_at": None, "eta": None, "customer_ref": "c1"},
    ],
    "open_alerts": [],
}  # fmt: skip


@pytest.fixture()
def whatsapp_env(stack_env: dict[str, str], dispatcher_api: tuple[str, list[str]]) -> dict[str, str]:
    """The test's stack variables plus the WhatsApp and Twilio secrets and the dispatcher API."""
    return {
        **stack_env,
        "WHATSUP_DISPATCHER_API_URL": dispatcher_api[0],
        "WHATSUP_API_KEYS": f"{INTERNAL_KEY}:internal",
        "WHATSUP_PHONE_HASH_KEY": secrets.token_hex(16),
        "WHATSUP_WHATSAPP_APP_SECRET": secrets.token_hex(16),
        "WHATSUP_WHATSAPP_VERIFY_TOKEN": secrets.token_hex(8),
        "WHATSUP_TWILIO_AUTH_TOKEN": secrets.token_hex(16),
    }


@pytest.fixture()
def whatsapp_worker(whatsapp_env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess]]:
    """A real worker holding the WhatsApp secrets, on this test's own topics."""
    settings = Settings.from_env(whatsapp_env)
    create_topics(settings)
    process = WorkerProcess(whatsapp_env, tmp_path / "worker.log")
    process.start()
    try:
        yield settings, process
    finally:
        process.stop()


def _high_watermark(settings: Settings, name: str) -> int:
    topic = topics.qualified(name, settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "hw"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return sum(
            consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        )
    finally:
        consumer.close()


def test_signed_webhooks_land_once_and_forgeries_land_nothing(
    whatsapp_worker: tuple[Settings, WorkerProcess],
) -> None:
    settings, worker = whatsapp_worker
    assert settings.whatsapp_app_secret and settings.phone_hash_key and settings.whatsapp_verify_token
    url = f"{worker.url}/webhooks/whatsapp"

    challenge = httpx.get(
        url,
        params={
            "hub.mode": "subscribe",
            "hub.verify_token": settings.whatsapp_verify_token,
            "hub.challenge": "42",
        },
    )
    assert (challenge.status_code, challenge.text) == (200, "42")
    wrong = httpx.get(
        url, params={"hub.mode": "subscribe", "hub.verify_token": "nope", "hub.challenge": "42"}
    )
    assert wrong.status_code == 403

    forged = body_of(meta_notification([text_message("meus pedidos hoje", mid="wamid.FORGED")]))
    unsigned = httpx.post(url, content=forged, headers={"Content-Type": "application/json"})
    assert unsigned.status_code == 401 and unsigned.json()["error"] == "missing_signature"
    bad = httpx.post(url, content=forged, headers={"X-Hub-Signature-256": meta_signature("guess", forged)})
    assert bad.status_code == 403 and bad.json()["error"] == "bad_signature"
    assert _high_watermark(settings, topics.WHATSAPP_EVENTS_RAW) == 0

    doc = meta_notification(
        [
            text_message("Meus pedidos hoje? 🛵", mid="wamid.T1"),
            location_message(-23.56, -46.65, mid="wamid.L1"),
        ],
        [meta_status("delivered", mid="wamid.OUT1", key="eta:D1:123")],
    )
    body = body_of(doc)
    headers = {"X-Hub-Signature-256": meta_signature(settings.whatsapp_app_secret, body)}
    first = httpx.post(url, content=body, headers=headers)
    assert first.status_code == 200, first.text
    assert first.json() == {"received": 3, "duplicates": 0}
    replay = httpx.post(url, content=body, headers=headers)
    assert replay.json() == {"received": 0, "duplicates": 3}
    tampered = body.replace(b"-23.56", b"-23.57")
    assert httpx.post(url, content=tampered, headers=headers).status_code == 403

    assert settings.twilio_auth_token
    twilio_url = f"{worker.url}/webhooks/twilio"
    form = [
        ("MessageSid", "SM77"),
        ("From", f"whatsapp:+{DRIVER_PHONE}"),
        ("Body", "cheguei"),
        ("NumMedia", "0"),
    ]
    signature = twilio_signature(settings.twilio_auth_token, twilio_url, form)
    posted = httpx.post(
        twilio_url,
        content=urlencode(form),
        headers={"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert posted.status_code == 200, posted.text
    assert (
        httpx.post(twilio_url, content=urlencode(form), headers={"X-Twilio-Signature": "x"}).status_code
        == 403
    )

    raw = topics.qualified(topics.WHATSAPP_EVENTS_RAW, settings.topic_prefix)
    events = read_topic(settings, raw, "WhatsAppEvent", until=lambda r: len(r) >= 4, timeout_s=30)
    by_id = {e.value["message_id"]: e.value for e in events}
    assert sorted(by_id) == ["SM77", "wamid.L1", "wamid.OUT1", "wamid.T1"]
    assert len(events) == 4  # the replay added nothing
    sender_hash = hash_phone(settings.phone_hash_key, DRIVER_PHONE)
    assert by_id["wamid.T1"]["from_hash"] == sender_hash and by_id["wamid.T1"]["type"] == "text"
    assert (by_id["wamid.L1"]["lat"], by_id["wamid.L1"]["lon"]) == (-23.56, -46.65)
    assert by_id["SM77"]["provider"] == "twilio" and by_id["SM77"]["from_hash"] == sender_hash
    assert all(e.key == e.value["from_hash"].encode() for e in events)
    assert DRIVER_PHONE not in json.dumps([e.value for e in events], ensure_ascii=False)

    status_topic = topics.qualified(topics.WHATSAPP_STATUS, settings.topic_prefix)
    statuses = read_topic(settings, status_topic, "MessageStatus", until=lambda r: len(r) >= 1, timeout_s=20)
    assert [(s.key, s.value["status"]) for s in statuses] == [(b"eta:D1:123", "delivered")]

    # The sender never registered: it was refused once, politely, and only once however often it writes.
    outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
    refusals = read_topic(settings, outbound, "OutboundMessage", until=lambda r: len(r) >= 1, timeout_s=20)
    assert len(refusals) == 1 and refusals[0].value["reason"] == "refusal_unknown"
    assert refusals[0].value["to"] == f"+{DRIVER_PHONE}" and refusals[0].value["language"] == "pt_BR"
    assert _high_watermark(settings, topics.WHATSAPP_OUTBOUND) == 1


def _load_registry(env: dict[str, str], tmp_path: Path) -> None:
    registry = tmp_path / "registry.json"
    registry.write_text(
        json.dumps(
            {
                "drivers": [{"driver_id": "d1", "phone": f"+{DRIVER_PHONE}", "language": "pt-BR"}],
                "customers": [{"customer_ref": "c1", "phone": "+5511912345678", "language": "en"}],
            }
        )
    )
    command = [sys.executable, "-m", "streams", "registry", "load", str(registry)]
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


def _post_signed(settings: Settings, worker: WorkerProcess, messages: list[dict[str, object]]) -> None:
    assert settings.whatsapp_app_secret
    body = body_of(meta_notification(messages))
    headers = {"X-Hub-Signature-256": meta_signature(settings.whatsapp_app_secret, body)}
    answer = httpx.post(f"{worker.url}/webhooks/whatsapp", content=body, headers=headers)
    assert answer.status_code == 200, answer.text


def test_a_drivers_messages_are_answered_and_an_alert_becomes_one_message(
    whatsapp_env: dict[str, str], dispatcher_api: tuple[str, list[str]], tmp_path: Path
) -> None:
    _load_registry(whatsapp_env, tmp_path)
    settings = Settings.from_env(whatsapp_env)
    create_topics(settings)
    worker = WorkerProcess(whatsapp_env, tmp_path / "worker.log")
    worker.start()
    try:
        now_s = int(time.time())
        # The order system's steps so far, as the stand-in API shows them: the driver's "delivered" then
        # applies in the worker's own state machine, and only an applied step tells the customer.
        steps = []
        for n, kind in enumerate(("assigned", "picked_up", "en_route")):
            step = {"event_id": f"ord-{n}", "delivery_id": "D-1001", "driver_id": "d1", "type": kind,
                    "ts": now_s * 1000 - 60_000 + n, "customer_ref": "c1", "pickup_lat": -23.5,
                    "pickup_lon": -46.6, "dropoff_lat": -23.6, "dropoff_lon": -46.7}  # fmt: skip
            topic = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
            steps.append((topic, b"d1", codec("DeliveryEvent").encode(step)))
        DeliveringProducer(settings).deliver(steps)
        applied = topics.qualified(topics.DELIVERIES_APPLIED, settings.topic_prefix)
        read_topic(settings, applied, "DeliveryEvent", until=lambda r: len(r) >= 3, timeout_s=60)
        _post_signed(settings, worker, [text_message("meus pedidos hoje", mid="wamid.Q1", ts=now_s)])
        _post_signed(settings, worker, [location_message(-23.5614, -46.6559, mid="wamid.L2", ts=now_s)])
        _post_signed(settings, worker, [text_message("Entregue!", mid="wamid.D1", ts=now_s)])

        outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
        # The assignment's offer to the driver, three replies, and the customer's messages for the steps
        # that tell them something (picked up, on the way, delivered): seven, in whatever order they land.
        expected = {"offer:D-1001:ord-0", "reply:meta:wamid.Q1", "reply:meta:wamid.L2", "reply:meta:wamid.D1",
                    "picked_up:D-1001", "en_route:D-1001", "delivered:D-1001"}  # fmt: skip
        replies = read_topic(
            settings, outbound, "OutboundMessage",
            until=lambda r: {m.value["message_key"] for m in r} >= expected, timeout_s=60,
        )  # fmt: skip
        by_key = {r.value["message_key"]: r.value for r in replies}
        assert sorted(by_key) == sorted(expected) and len(replies) == len(expected)
        assert by_key["offer:D-1001:ord-0"]["button_ids"] == ["acc:D-1001", "dec:D-1001"]
        orders = by_key["reply:meta:wamid.Q1"]
        assert orders["to"] == f"+{DRIVER_PHONE}"
        assert (
            "1. D-1001 para o cliente, -23.60000,-46.70000: a caminho, ainda sem previsão" in orders["text"]
        )
        assert by_key["reply:meta:wamid.L2"]["text"] == "Localização recebida, obrigado!"
        assert "D-1001" in by_key["reply:meta:wamid.D1"]["text"]
        # The driver's "delivered" reached the customer too, in the customer's language, as a template
        # (the customer never wrote to us, so their window is closed).
        told = by_key["delivered:D-1001"]
        assert (told["to"], told["language"], told["template"], told["text"]) == (
            "+5511912345678", "en", "delivery_delivered", None
        )  # fmt: skip
        assert set(dispatcher_api[1]) == {INTERNAL_KEY}

        pings_topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
        pings = read_topic(settings, pings_topic, "GpsPing", until=lambda r: len(r) >= 1, timeout_s=30)
        assert [(p.key, p.value["ping_id"], p.value["source"], p.value["seq"]) for p in pings] == [
            (b"d1", "wa:wamid.L2", "whatsapp", None)
        ]
        events_topic = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
        events = read_topic(
            settings, events_topic, "DeliveryEvent", until=lambda r: len(r) >= 4, timeout_s=30
        )
        assert [(e.key, e.value["type"]) for e in events if e.value["source"] == "whatsapp"] == [
            (b"d1", "delivered")
        ]

        before = len(replies)
        alert = {
            "alert_id": "stall:d1:1763870000000", "kind": "stall", "driver_id": "d1", "delivery_id": "D-1001",
            "started_at": 1_763_870_000_000, "detected_at": int(time.time() * 1000), "lat": -23.56,
            "lon": -46.65, "h3_r9": 617733123, "severity": "warning", "detail": "",
        }  # fmt: skip
        DeliveringProducer(settings).deliver(
            [(topics.qualified(topics.ALERTS, settings.topic_prefix), b"d1", codec("Alert").encode(alert))]
        )
        after = read_topic(
            settings, outbound, "OutboundMessage", until=lambda r: len(r) > before, timeout_s=60
        )
        checks = [r.value for r in after if r.value["reason"] == "stall_check"]
        assert len(checks) == 1
        check = checks[0]
        assert check["message_key"] == "stall_check:stall:d1:1763870000000"
        assert check["buttons"] == ["Trânsito", "Moto quebrou", "Em pausa"]
        assert check["text"]  # the driver wrote minutes ago: inside the window, free text
        time.sleep(2)  # nothing else may follow
        assert _high_watermark(settings, topics.WHATSAPP_OUTBOUND) == before + 1
    finally:
        worker.stop()


def test_the_demo_step_lands_signed_webhooks_once_and_refuses_the_forgery(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        **stack_env,
        "WHATSUP_API_KEYS": f"{INTERNAL_KEY}:internal",
        "WHATSUP_PHONE_HASH_KEY": secrets.token_hex(16),
        "WHATSUP_WHATSAPP_APP_SECRET": secrets.token_hex(16),
    }
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        assert inbound_demo.show(Settings.from_env(env))
    finally:
        worker.stop()
    shown = capsys.readouterr().out
    assert "-> 403" in shown and "every check passed" in shown
    assert inbound_demo.DRIVER_PHONE[-8:] not in shown  # the number is shown masked only
