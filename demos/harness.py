"""What the demo's WhatsApp steps share: hashed and masked numbers, and reading message statuses back."""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.settings import Settings
from schemas.codecs import codec


def phone_hash(settings: Settings, phone: str) -> str:
    """Return the keyed HMAC of the E.164 number, as every topic but whatsapp.outbound carries it."""
    key = (settings.phone_hash_key or "demo-phone-hash-key").encode()
    return hmac.new(key, phone.encode(), hashlib.sha256).hexdigest()[:32]


def masked(phone: str) -> str:
    """Return ``phone`` for display, its middle digits hidden."""
    return f"{phone[:3]} ** *****-{phone[-4:]}"


Records = list[dict[str, Any]]


def read_statuses(
    settings: Settings, name: str, prefix: str, done: Callable[[Records], bool], timeout_s: float
) -> Records:
    """Read the statuses of topic ``name`` keyed under ``prefix`` until ``done`` holds or time runs out."""
    topic = topics.qualified(name, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    decode, found = codec("MessageStatus").decode, list[dict[str, Any]]()
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline and not done(found):
            for record in consumer.consume(500, timeout=0.3):
                value = record.value()
                if record.error() is None and value and (record.key() or b"").decode().startswith(prefix):
                    found.append(decode(value))
    finally:
        consumer.close()
    return found
