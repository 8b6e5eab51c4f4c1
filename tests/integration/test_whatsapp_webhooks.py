"""Signed webhooks through a real worker: normalized on whatsapp.events.raw once; forgeries land nothing."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlencode

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.signatures import meta_signature, twilio_signature
from streams import topics
from streams.kafka import create_topics
from streams.settings import Settings
from tests.integration.stack import WorkerProcess, read_topic
from tests.whatsapp_payloads import (
    DRIVER_PHONE,
    body_of,
    location_message,
    meta_notification,
    meta_status,
    text_message,
)


@pytest.fixture()
def whatsapp_env(stack_env: dict[str, str]) -> dict[str, str]:
    """The test's stack variables plus the WhatsApp and Twilio secrets."""
    return {
        **stack_env,
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
