"""The WhatsApp step of ``whatsup demo``: signed webhooks in, what landed on Kafka and what a driver is told.

A registered demo driver asks "meus pedidos hoje" and shares a location; a forged webhook is refused; a
replay is dropped. Then the topics are read back and checked: one normalized event per genuine message,
nothing for the forgery, a ``whatsapp`` ping for the location, and the replies the sender would send.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from typing import Any

import httpx
import redis.asyncio as aioredis
from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.exceptions import SchemaError
from base.settings import Settings
from connectors.whatsapp.phones import hash_phone, mask_phone
from connectors.whatsapp.registry import Customer, Driver, Registry
from connectors.whatsapp.signatures import meta_signature
from schemas.codecs import codec
from streams.conversations.dispatcher import internal_api_key

DRIVER_PHONE = "+5511987650001"
CUSTOMER_PHONE = "+14155550199"


def _notification(message: dict[str, Any]) -> bytes:
    value = {"messaging_product": "whatsapp", "metadata": {"phone_number_id": "demo"}, "messages": [message]}
    doc = {
        "object": "whatsapp_business_account",
        "entry": [{"id": "demo", "changes": [{"field": "messages", "value": value}]}],
    }
    return json.dumps(doc, ensure_ascii=False).encode()


def _read(
    settings: Settings, name: str, schema: str, wanted: int, match: Any, timeout_s: float = 30.0
) -> list[Any]:
    topic = topics.qualified(name, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"demo-{uuid.uuid4().hex}",
            "enable.auto.commit": False,
        }
    )
    found: list[Any] = []
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
        deadline = time.monotonic() + timeout_s
        while len(found) < wanted and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.3):
                if message.error() is None:
                    try:
                        value = codec(schema).decode(message.value() or b"")
                    except SchemaError:
                        continue
                    if match(value):
                        found.append(value)
    finally:
        consumer.close()
    return found


def _prepare(settings: Settings, url: str, run: str, driver_id: str) -> str:
    """Register the demo driver and customer; give the driver an order if this worker has the API."""
    assert settings.phone_hash_key

    async def load() -> None:
        client = aioredis.from_url(settings.redis_url)
        try:
            registry = Registry(client, settings.phone_hash_key or "", settings.topic_prefix)
            await registry.load(
                [
                    Driver(driver_id, DRIVER_PHONE, "active", "pt-BR"),
                    Customer(f"cust-{run}", CUSTOMER_PHONE, "en"),
                ]
            )
        finally:
            await client.aclose()

    asyncio.run(load())
    key = internal_api_key(settings.api_keys)
    now = int(time.time() * 1000)
    order = {
        "event_id": f"assign-{run}",
        "delivery_id": f"D-{run}",
        "driver_id": driver_id,
        "type": "assigned",
        "ts": now,
        "pickup_lat": -23.5617,
        "pickup_lon": -46.6560,
        "dropoff_lat": -23.5874,
        "dropoff_lon": -46.6576,
        "promised_at": now + 1_800_000,
        "customer_ref": f"cust-{run}",
    }
    if key is None:
        return "no internal API key: the driver's orders cannot be read"
    answer = httpx.post(f"{url}/v1/deliveries/events", json=order, headers={"X-API-Key": key}, timeout=10)
    return f"order D-{run} assigned through POST /v1/deliveries/events -> {answer.status_code}"


def show(settings: Settings) -> bool:
    """Post signed webhooks to the running worker, show what landed and what the driver is answered."""
    print("\n== WhatsApp: signed webhooks, driver conversations")
    if not (settings.phone_hash_key and settings.whatsapp_app_secret):
        print(
            "  WHATSUP_PHONE_HASH_KEY and WHATSUP_WHATSAPP_APP_SECRET must be set (deploy/demo.sh sets them)"
        )
        return False
    url = f"http://127.0.0.1:{settings.web_port}"
    run = uuid.uuid4().hex[:6]
    driver_id = f"wa-{run}"
    prepared = _prepare(settings, url, run, driver_id)
    print(f"  driver {driver_id} ({mask_phone(DRIVER_PHONE)}) registered; {prepared}")
    time.sleep(1.0)  # let the deliveries agent take the assignment before the driver asks
    now_s = int(time.time())
    sender = DRIVER_PHONE.lstrip("+")
    asks = {
        "from": sender,
        "id": f"wamid.ask{run}",
        "timestamp": str(now_s),
        "type": "text",
        "text": {"body": "meus pedidos hoje"},
    }
    shares = {
        "from": sender,
        "id": f"wamid.loc{run}",
        "timestamp": str(now_s),
        "type": "location",
        "location": {"latitude": -23.5629, "longitude": -46.6544, "name": "Av. Paulista"},
    }
    forged = {**asks, "id": f"wamid.forged{run}", "text": {"body": "entregue"}}
    secret = settings.whatsapp_app_secret
    posts = [
        ('"meus pedidos hoje", signed', _notification(asks), secret, 200),
        ("a location share, signed", _notification(shares), secret, 200),
        ("the first one again (a replay)", _notification(asks), secret, 200),
        ('"entregue", forged signature', _notification(forged), "not-the-app-secret", 403),
    ]
    ok = True
    for label, body, key, expected in posts:
        answer = httpx.post(
            f"{url}/webhooks/whatsapp",
            content=body,
            headers={"X-Hub-Signature-256": meta_signature(key, body)},
            timeout=10,
        )
        ok &= answer.status_code == expected
        print(f"  POST /webhooks/whatsapp {label:<32} -> {answer.status_code} {answer.text}")

    ids = {asks["id"], shares["id"], forged["id"]}
    landed = _read(
        settings, topics.WHATSAPP_EVENTS_RAW, "WhatsAppEvent", 3, lambda v: v["message_id"] in ids, 10
    )
    print("  on whatsapp.events.raw (phone as keyed hash):")
    for event in landed:
        print(
            f"    {event['message_id']:<22} {event['type']:<9} from {event['from_hash'][:12]}... "
            f"text={event['text']!r} lat={event['lat']} lon={event['lon']}"
        )
    counts = {i: sum(e["message_id"] == i for e in landed) for i in ids}
    ok &= counts == {asks["id"]: 1, shares["id"]: 1, forged["id"]: 0}
    assert settings.phone_hash_key
    ok &= all(e["from_hash"] == hash_phone(settings.phone_hash_key, DRIVER_PHONE) for e in landed)

    ping_id = f"wa:{shares['id']}"
    pings = _read(settings, topics.GPS_PINGS_RAW, "GpsPing", 1, lambda v: v["ping_id"] == ping_id)
    for ping in pings:
        print(
            f"  on gps.pings.raw: {ping['ping_id']} driver={ping['driver_id']} source={ping['source']} "
            f"lat={ping['lat']} lon={ping['lon']}"
        )
    ok &= len(pings) == 1 and pings[0]["source"] == "whatsapp"

    keys = {f"reply:meta:{asks['id']}", f"reply:meta:{shares['id']}"}
    replies = _read(
        settings, topics.WHATSAPP_OUTBOUND, "OutboundMessage", 2, lambda v: v["message_key"] in keys
    )
    print("  on whatsapp.outbound, what the driver would be answered:")
    for reply in replies:
        text = reply["text"].replace("\n", "\n      ")
        print(f"    to {mask_phone(reply['to'])} ({reply['language']}), {reply['reason']}:\n      {text}")
    ok &= len(replies) == 2
    print("  WhatsApp step: " + ("every check passed" if ok else "a check FAILED"))
    return ok
