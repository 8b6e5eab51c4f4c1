"""The conversation handler on encoded topic records: who is answered, with what, on which topics."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.registry import Driver
from schemas.codecs import codec
from streams.conversations.conversation import Conversation

KEY = "k"
ACTIVE = Driver("d1", "+5511987654321", "active", "en")
SUSPENDED = Driver("d2", "+5511900000002", "suspended", "pt-BR")


class Drivers:
    """The registry's lookup, over a dict (the Redis-backed one is tested on real Redis)."""

    def __init__(self, *drivers: Driver) -> None:
        self.by_hash = {hash_phone(KEY, d.phone): d for d in drivers}

    async def drivers_by_hash(self, hashes: list[str]) -> list[Driver | None]:
        return [self.by_hash.get(h) for h in hashes]


def _event(phone: str, kind: str = "text", text: str | None = None, **extra: Any) -> bytes:
    record = {"message_id": f"w-{kind}-{text}", "provider": "meta", "from_hash": hash_phone(KEY, phone),
              "type": kind, "text": text, "payload": "{}", "lat": None, "lon": None, "ts": 1_000,
              "received_ts": 2_000, **extra}  # fmt: skip
    return codec("WhatsAppEvent").encode(record)


STATE = {"driver_id": "d1", "last_fix": None, "open_alerts": [],
         "active_deliveries": [{"delivery_id": "D-7", "status": "arrived", "customer_ref": "c"}]}  # fmt: skip


def _handle(
    raws: list[bytes], state: dict[str, Any] | None = STATE
) -> list[tuple[str, bytes, dict[str, Any]]]:
    asked: list[str] = []

    async def read_state(driver_id: str) -> dict[str, Any] | None:
        asked.append(driver_id)
        return state

    conversation = Conversation(Drivers(ACTIVE, SUSPENDED), read_state, load_catalogue(), topic_prefix="p.")
    records = asyncio.run(conversation.handle(raws))
    assert set(asked) <= {"d1"}
    schemas = {"p.whatsapp.outbound": "OutboundMessage", "p.deliveries.events": "DeliveryEvent",
               "p.gps.pings.raw": "GpsPing", "p.alerts": "Alert"}  # fmt: skip
    return [(topic, key, codec(schemas[topic]).decode(value)) for topic, key, value in records]


def test_a_delivered_quick_reply_becomes_an_event_and_an_answer() -> None:
    records = _handle(
        [_event(ACTIVE.phone, "button", "Delivered", payload=json.dumps({"payload": "qr:delivered"}))]
    )
    reply_key = hash_phone(KEY, ACTIVE.phone).encode()
    assert [(t, k) for t, k, _ in records] == [
        ("p.deliveries.events", b"d1"),
        ("p.whatsapp.outbound", reply_key),
    ]
    event, reply = records[0][2], records[1][2]
    assert (event["delivery_id"], event["type"], event["source"]) == ("D-7", "delivered", "whatsapp")
    assert reply["to"] == ACTIVE.phone and reply["text"] == "Noted: order D-7 delivered. Thank you!"
    assert reply["language"] == "en" and reply["reason"] == "reply_delivery_delivered"


def test_strangers_suspended_drivers_statuses_and_garbage_get_nothing() -> None:
    raws = [
        _event("+5511955555555", text="meus pedidos"),
        _event(SUSPENDED.phone, text="meus pedidos"),
        _event(ACTIVE.phone, "status"),
        _event(ACTIVE.phone, "reaction", "👍"),
        b"not avro",
    ]
    assert _handle(raws) == []


def test_a_location_becomes_a_whatsapp_ping_keyed_by_driver() -> None:
    records = _handle([_event(ACTIVE.phone, "location", lat=-23.5, lon=-46.6)])
    topic, key, ping = records[0]
    assert (topic, key, ping["source"], ping["lat"], ping["driver_id"]) == (
        "p.gps.pings.raw",
        b"d1",
        "whatsapp",
        -23.5,
        "d1",
    )
    assert records[1][2]["text"] == "Location received, thank you!"


def test_an_unreadable_state_is_answered_honestly() -> None:
    records = _handle([_event(ACTIVE.phone, text="my orders")], state=None)
    assert [r[2]["reason"] for r in records] == ["reply_state_unavailable"]
