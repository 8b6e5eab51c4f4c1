"""Deliveries, ETAs, alerts, WhatsApp messages and API reads around a simulated fleet, with their truth.

The ping path has its own stages; these other topics are produced here with the real Avro codecs, as the
deliveries, notify and sender stages would, so the analyst queries can be checked against known answers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from base import topics
from schemas.codecs import codec

MINUTE = 60_000


@dataclass
class Story:
    """Every record to produce, per topic, and the answers the queries must give."""

    records: dict[str, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    final_status: dict[str, str] = field(default_factory=dict)
    history: dict[str, list[str]] = field(default_factory=dict)
    driver_of: dict[str, str] = field(default_factory=dict)
    delivered: dict[str, tuple[int, int | None]] = field(default_factory=dict)  # delivered_at, promised
    eta_errors_s: dict[str, tuple[int, int]] = field(default_factory=dict)  # first, last
    stalls: dict[str, int] = field(default_factory=dict)
    funnel: dict[str, dict[str, int]] = field(default_factory=dict)
    location_reads: dict[str, int] = field(default_factory=dict)

    def add(self, topic: str, schema: str, key: str, record: dict[str, Any]) -> None:
        self.records.setdefault(topic, []).append((key.encode(), codec(schema).encode(record)))


def _deliveries(story: Story, drivers: list[str], start_ms: int) -> None:
    # (steps after assignment in minutes, promised minute or None): delivered on time, late, failed, open.
    plans = [
        ([("picked_up", 1), ("en_route", 2), ("delivered", 6)], 7),
        ([("picked_up", 1), ("en_route", 2), ("delivered", 7)], 8),
        ([("picked_up", 1), ("en_route", 2), ("delivered", 8)], 5),  # late
        ([("picked_up", 1), ("en_route", 2), ("delivered", 5)], None),
        ([("picked_up", 2), ("failed", 4)], 6),
        ([("picked_up", 1), ("en_route", 3)], 9),  # still on its way
    ]
    for i, (steps, promised_min) in enumerate(plans):
        driver, delivery = drivers[i], f"dl-{drivers[i]}"
        assigned = start_ms + MINUTE
        promised = assigned + promised_min * MINUTE if promised_min is not None else None
        story.driver_of[delivery] = driver
        story.history[delivery] = ["assigned"] + [kind for kind, _ in steps]
        story.final_status[delivery] = steps[-1][0]
        for n, (kind, minute) in enumerate([("assigned", 0), *steps]):
            ts = assigned + minute * MINUTE
            story.add(
                topics.DELIVERIES_EVENTS,
                "DeliveryEvent",
                driver,
                {
                    "event_id": f"{delivery}-{n}",
                    "delivery_id": delivery,
                    "driver_id": driver,
                    "type": kind,
                    "ts": ts,
                    "pickup_lat": -23.55,
                    "pickup_lon": -46.63,
                    "dropoff_lat": -23.56,
                    "dropoff_lon": -46.64,
                    "promised_at": promised,
                    "customer_ref": f"cust-{i}",
                    "source": "simulator",
                    "note": "customer absent" if kind == "failed" else None,
                },
            )
            if kind == "delivered":
                story.delivered[delivery] = (ts, promised)
                first_eta, last_eta = ts - 90_000, ts + 20_000  # first said 90 s early, last 20 s late
                story.eta_errors_s[delivery] = (90, -20)
                for computed, eta in ((assigned, first_eta), (ts - MINUTE, last_eta)):
                    story.add(
                        topics.DELIVERIES_ETA,
                        "EtaUpdate",
                        driver,
                        {
                            "delivery_id": delivery,
                            "driver_id": driver,
                            "eta": eta,
                            "remaining_m": 1200.0,
                            "speed_mps": 6.0,
                            "method": "blended",
                            "computed_at": computed,
                            "promised_at": promised,
                        },
                    )


def _alerts(story: Story, drivers: list[str], start_ms: int) -> None:
    for n, (driver, kind) in enumerate(
        [
            (drivers[0], "stall"),
            (drivers[0], "stall_resolved"),
            (drivers[1], "stall"),
            (drivers[2], "late_risk"),
        ]
    ):
        if kind == "stall":
            story.stalls[driver] = story.stalls.get(driver, 0) + 1
        story.add(
            topics.ALERTS,
            "Alert",
            driver,
            {
                "alert_id": f"al-{n}",
                "kind": kind,
                "driver_id": driver,
                "delivery_id": f"dl-{driver}",
                "started_at": start_ms + (3 + n) * MINUTE,
                "detected_at": start_ms + (3 + n) * MINUTE + 5000,
                "lat": -23.55,
                "lon": -46.63,
                "h3_r9": 0x89A8100C6BFFFFF,
                "severity": "warning",
                "detail": "",
            },
        )


def _messages(story: Story, start_ms: int) -> None:
    # message -> (reason, statuses reported by the sender)
    messages = {
        "m1": ("eta_changed", ["sent", "delivered", "read"]),
        "m2": ("eta_changed", ["sent", "delivered"]),
        "m3": ("eta_changed", ["sent", "failed"]),
        "m4": ("delivered", ["failed"]),
        "m5": ("delivered", []),
    }
    rank = {"sent": 1, "delivered": 2, "read": 3}
    for n, (key, (reason, statuses)) in enumerate(messages.items()):
        to_hash = f"{n:032x}"
        story.add(
            topics.WHATSAPP_OUTBOUND,
            "OutboundMessage",
            to_hash,
            {
                "message_key": key,
                "to": f"+5511900000{n:03d}",
                "to_hash": to_hash,
                "template": "eta_update",
                "params": ["12:30"],
                "buttons": [],
                "reason": reason,
                "driver_id": None,
                "delivery_id": None,
                "created_at": start_ms + n * 1000,
            },
        )
        for step, status in enumerate(statuses, start=1):
            story.add(
                topics.WHATSAPP_STATUS,
                "MessageStatus",
                key,
                {
                    "message_key": key,
                    "provider": "meta",
                    "provider_message_id": f"wamid.{key}",
                    "status": status,
                    "error_code": 131026 if status == "failed" else None,
                    "error_title": "Message undeliverable" if status == "failed" else None,
                    "attempt": 1,
                    "to_hash": to_hash,
                    "ts": start_ms + n * 1000 + step * 500,
                },
            )
        row = story.funnel.setdefault(
            reason, {"messages": 0, "sent": 0, "delivered": 0, "read": 0, "failed": 0}
        )
        reached = max((rank.get(s, 0) for s in statuses), default=0)
        row["messages"] += 1
        row["sent"] += reached >= 1
        row["delivered"] += reached >= 2
        row["read"] += reached >= 3
        row["failed"] += "failed" in statuses and reached < 2


def _api_reads(story: Story, drivers: list[str], start_ms: int) -> None:
    reads = [(drivers[0], True), (drivers[0], True), (drivers[0], False), (drivers[1], True)]
    for n, (driver, location) in enumerate(reads):
        story.location_reads[driver] = story.location_reads.get(driver, 0) + location
        story.add(
            topics.API_ACCESS,
            "ApiAccess",
            "key:3f9a1c0b",
            {
                "access_id": f"acc-{n}",
                "ts": start_ms + n * 1000,
                "principal": "key:3f9a1c0b",
                "role": "dispatcher",
                "method": "GET",
                "route": "/v1/drivers/{driver_id}",
                "status": 200,
                "driver_id": driver,
                "delivery_id": None,
                "location_read": location,
            },
        )


def make_story(drivers: list[str], start_ms: int) -> Story:
    """Return the records and truths of six deliveries, four alerts, five messages and four API reads."""
    story = Story()
    _deliveries(story, drivers, start_ms)
    _alerts(story, drivers, start_ms)
    _messages(story, start_ms)
    _api_reads(story, drivers, start_ms)
    return story
