"""``whatsup erase``: a person's data erased under the LGPD, by driver id or by phone number.

What goes, and where:
- Redis, here and at once: the person's driver entry and customer entries in the registry, refusal claims,
  reply windows, and which deliveries were theirs as a customer.
- An erasure request on ``privacy.erasures`` (keyed by the driver, so co-partitioned with the driver's
  state): the worker tombstones the driver's state on its changelog (``streams/deliveries/erasure.py``); the
  sink deletes the person's rows in every ClickHouse table and writes the audit row (``sinks/erasure.py``).
- ``--wait`` waits for that audit row, read through the sink's query endpoint.

The request names the driver id in clear (the worker and the sink need it); its topic keeps it one day.
A phone number never leaves this process: only its keyed hash does. A phone that is a driver's erases the
driver. Running it again is harmless: nothing is left to delete, and the audit keeps one row per request.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from base import topics
from base.exceptions import SettingsError
from base.kafka import make_producer
from base.settings import Settings
from connectors.llm.memory import Budget
from connectors.whatsapp.chat import ContextStore
from connectors.whatsapp.phones import hash_phone, normalize_phone
from connectors.whatsapp.registry import Customer, Driver, Registry
from schemas.codecs import codec
from sinks.query import QueryError, run_query
from streams.notify.store import NotifyStore


@dataclass
class Subject:
    """Whom a request names, as found in the registry."""

    subject_hash: str
    driver_id: str | None = None
    driver: Driver | None = None
    phone_hashes: list[str] = field(default_factory=list)
    customers: list[Customer] = field(default_factory=list)


def audit_hash(key: str, kind: str, value: str) -> str:
    """Return the keyed hash that names a subject (``driver`` id or E.164 ``phone``) in the erasure audit:
    unlike the phone hash the data tables carry, it matches no row anywhere else."""
    return hmac.new(key.encode(), f"{kind}:{value}".encode(), hashlib.sha256).hexdigest()[:32]


async def find_subject(registry: Registry, key: str, driver_id: str | None, phone: str | None) -> Subject:
    """Find the person: by driver id (and the driver's phone), or by phone (and the driver it belongs to)."""
    if driver_id is not None:
        subject = Subject(audit_hash(key, "driver", driver_id), driver_id=driver_id)
        subject.driver = await registry.driver_by_id(driver_id)
        phone = subject.driver.phone if subject.driver else None
    else:
        assert phone is not None
        phone = normalize_phone(phone)
        subject = Subject(audit_hash(key, "phone", phone))
        subject.driver = await registry.driver_by_hash(hash_phone(key, phone))
        subject.driver_id = subject.driver.driver_id if subject.driver else None
    if phone is not None:
        subject.phone_hashes = [hash_phone(key, phone)]
        subject.customers = await registry.customers_with_phone(phone)
    return subject


def request_record(subject: Subject, requested_by: str, reason: str, now_ms: int) -> dict[str, Any]:
    """Return the Erasure record for ``subject``."""
    return {
        "erasure_id": uuid.uuid4().hex,
        "subject_hash": subject.subject_hash,
        "driver_id": subject.driver_id,
        "phone_hashes": subject.phone_hashes,
        "customer_refs": [customer.customer_ref for customer in subject.customers],
        "requested_at": now_ms,
        "requested_by": requested_by,
        "reason": reason,
    }


async def erase_redis(settings: Settings, subject: Subject) -> int:
    """Delete the person's keys in Redis; return how many went."""
    assert settings.phone_hash_key is not None
    client = aioredis.from_url(settings.redis_url)
    try:
        registry = Registry(client, settings.phone_hash_key, settings.topic_prefix)
        refs = [customer.customer_ref for customer in subject.customers]
        deleted = await registry.forget(subject.driver, subject.customers, subject.phone_hashes)
        if subject.driver_id:  # what the chat last asked the driver, and their language model budget
            deleted += await ContextStore(client, settings.topic_prefix).forget(subject.driver_id)
            deleted += await Budget(client, settings.topic_prefix, 0, 0).forget(subject.driver_id)
        return deleted + await NotifyStore(client, settings.topic_prefix).forget(subject.phone_hashes, refs)
    finally:
        await client.aclose()


async def resolve(settings: Settings, driver_id: str | None, phone: str | None) -> Subject:
    """Find the person in the registry of ``settings``."""
    if settings.phone_hash_key is None:
        raise SettingsError("WHATSUP_PHONE_HASH_KEY must be set to erase: phones are found by their hash")
    client = aioredis.from_url(settings.redis_url)
    try:
        return await find_subject(
            Registry(client, settings.phone_hash_key, settings.topic_prefix),
            settings.phone_hash_key,
            driver_id,
            phone,
        )
    finally:
        await client.aclose()


def publish(settings: Settings, record: dict[str, Any]) -> None:
    """Write the request to ``privacy.erasures`` and wait for the broker."""
    producer = make_producer(settings)
    key = (record["driver_id"] or record["subject_hash"]).encode()
    topic = topics.qualified(topics.PRIVACY_ERASURES, settings.topic_prefix)
    producer.produce(topic, codec("Erasure").encode(record), key)
    if producer.flush(30) > 0:
        raise SettingsError(f"the erasure request did not reach Kafka at {settings.kafka_bootstrap} in 30 s")


def wait_applied(settings: Settings, erasure_id: str, timeout_s: float) -> bool:
    """Wait until the sink's audit row of ``erasure_id`` exists; False on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            rows = run_query(
                settings,
                "SELECT count() AS n FROM erasures WHERE erasure_id = {id:String}",
                {"id": erasure_id},
                timeout_s=10,
            )
            if rows and int(rows[0]["n"]) > 0:
                return True
        except QueryError:
            pass  # the sink is starting or away: keep waiting
        time.sleep(0.5)
    return False
