"""What the pipeline answers and does for a driver's message. Pure: state in, records and a reply out.

The driver's state is the dispatcher API's JSON for ``GET /v1/drivers/{id}`` (``None`` when it could not be
read). Quick replies ``arrived`` and ``delivered`` become DeliveryEvents on the driver's current delivery;
``traffic``, ``breakdown`` and ``on_break`` annotate the driver's open alert (the same ``alert_id`` again,
with the reply in ``detail``) or, with no open alert, become an ``en_route`` DeliveryEvent carrying the
reply as its note. A location share becomes a GpsPing with source ``whatsapp``. Every record's id derives
from the WhatsApp message id, so a replayed message produces the same records.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from connectors.whatsapp.catalogue import Catalogue, local_clock
from connectors.whatsapp.registry import Driver
from streams.conversations.guardrails import guard_output
from streams.conversations.intents import Intent, IntentKind

ANNOTATING = {IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK}
NEEDS_STATE = {
    IntentKind.ORDERS_TODAY,
    IntentKind.ORDER_DETAILS,
    IntentKind.ARRIVED,
    IntentKind.DELIVERED,
} | ANNOTATING
ALERT_KINDS = {"stall", "offline", "late_risk", "frozen_gps"}
# Which delivery a quick reply is about: the first active one in the most advanced eligible status.
_TARGET_ORDER = {
    IntentKind.ARRIVED: ("en_route", "picked_up", "assigned"),
    IntentKind.DELIVERED: ("arrived", "en_route", "picked_up", "assigned"),
}


@dataclass(frozen=True)
class Reaction:
    """A reply to the driver and the records the message causes."""

    reply: str
    outcome: str
    delivery_event: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    ping: dict[str, Any] | None = None


@dataclass(frozen=True)
class Context:
    """Who wrote, in which words to answer, and how to show times."""

    driver: Driver
    catalogue: Catalogue
    utc_offset_h: float = -3.0

    def say(self, name: str, **params: Any) -> str:
        return self.catalogue.render(name, self.driver.language, **params)

    def clock(self, ms: int | None) -> str:
        return self.say("unknown_value") if ms is None else local_clock(ms, self.utc_offset_h)


def location_ping(event: dict[str, Any], driver_id: str) -> dict[str, Any]:
    """Return the GpsPing a shared location stands for (one static fix, no sequence number)."""
    return {
        "ping_id": f"wa:{event['message_id']}",
        "driver_id": driver_id,
        "device_ts": event["ts"],
        "lat": event["lat"],
        "lon": event["lon"],
        "accuracy_m": None,
        "speed_mps": None,
        "heading": None,
        "battery": None,
        "seq": None,
        "source": "whatsapp",
        "received_ts": event["received_ts"],
    }


def _active(state: dict[str, Any]) -> list[dict[str, Any]]:
    return [d for d in state.get("active_deliveries") or [] if isinstance(d, dict) and d.get("delivery_id")]


def find_delivery(state: dict[str, Any], ref: str) -> dict[str, Any] | None:
    """Return the active delivery ``ref`` names: its 1-based position in the list, its id or an id suffix."""
    deliveries = _active(state)
    if ref.isdigit() and 1 <= int(ref) <= len(deliveries):
        return deliveries[int(ref) - 1]
    wanted = ref.upper()
    for delivery in deliveries:
        if str(delivery["delivery_id"]).upper() == wanted:
            return delivery
    matches = [d for d in deliveries if str(d["delivery_id"]).upper().endswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _target(state: dict[str, Any], kind: IntentKind) -> dict[str, Any] | None:
    deliveries = _active(state)
    for status in _TARGET_ORDER.get(kind, ()):
        for delivery in deliveries:
            if delivery.get("status") == status:
                return delivery
    return deliveries[0] if deliveries else None


def _status_word(ctx: Context, status: Any) -> str:
    name = f"status_{status}"
    return ctx.say(name if name in ctx.catalogue.replies else "status_unknown")


def _orders_today(ctx: Context, state: dict[str, Any]) -> str:
    deliveries = _active(state)
    if not deliveries:
        return ctx.say("no_orders")
    lines = []
    for index, delivery in enumerate(deliveries, start=1):
        status = _status_word(ctx, delivery.get("status"))
        eta = ctx.clock(delivery.get("eta"))
        lines.append(
            ctx.say("order_line", index=index, delivery_id=delivery["delivery_id"], status=status, eta=eta)
        )
    return ctx.say("orders_today", count=len(deliveries), lines="\n".join(lines))


def _place(point: Any) -> str:
    if (
        isinstance(point, dict)
        and isinstance(point.get("lat"), int | float)
        and isinstance(point.get("lon"), int | float)
    ):
        return f"{point['lat']:.5f},{point['lon']:.5f}"
    return "?"


def _details(ctx: Context, state: dict[str, Any], ref: str) -> str:
    delivery = find_delivery(state, ref)
    if delivery is None:
        return ctx.say("order_not_found", ref=ref)
    return ctx.say(
        "order_details",
        delivery_id=delivery["delivery_id"],
        status=_status_word(ctx, delivery.get("status")),
        pickup=_place(delivery.get("pickup")),
        dropoff=_place(delivery.get("dropoff")),
        promised=ctx.clock(delivery.get("promised_at")),
        eta=ctx.clock(delivery.get("eta")),
    )


def _delivery_event(
    event: dict[str, Any], driver_id: str, delivery: dict[str, Any], kind: str, note: str
) -> dict[str, Any]:
    return {
        "event_id": f"wa:{event['message_id']}",
        "delivery_id": str(delivery["delivery_id"]),
        "driver_id": driver_id,
        "type": kind,
        "ts": event["ts"],
        "customer_ref": delivery.get("customer_ref"),
        "promised_at": delivery.get("promised_at"),
        "source": "whatsapp",
        "note": note,
    }


def _annotated_alert(
    event: dict[str, Any], driver_id: str, state: dict[str, Any], kind: IntentKind
) -> dict[str, Any] | None:
    alerts = [
        a for a in state.get("open_alerts") or [] if isinstance(a, dict) and a.get("kind") in ALERT_KINDS
    ]
    fix = state.get("last_fix")
    if not alerts or not isinstance(fix, dict) or fix.get("lat") is None or fix.get("lon") is None:
        return None
    alert = max(alerts, key=lambda a: a.get("started_at") or 0)
    deliveries = _active(state)
    return {
        "alert_id": str(alert["alert_id"]),
        "kind": alert["kind"],
        "driver_id": driver_id,
        "delivery_id": str(deliveries[0]["delivery_id"]) if deliveries else None,
        "started_at": int(alert.get("started_at") or event["ts"]),
        "detected_at": event["ts"],
        "lat": float(fix["lat"]),
        "lon": float(fix["lon"]),
        "h3_r9": int(fix.get("h3_r9") or 0),
        "severity": "critical" if kind == IntentKind.BREAKDOWN else "warning",
        "detail": f"driver_reply:{kind}",
    }


def respond(intent: Intent, event: dict[str, Any], state: dict[str, Any] | None, ctx: Context) -> Reaction:
    """Return the reply to a driver's message and the records it causes."""
    driver_id = ctx.driver.driver_id
    if intent.kind == IntentKind.LOCATION:
        return Reaction(ctx.say("location_received"), "ping", ping=location_ping(event, driver_id))
    if intent.kind == IntentKind.HELP:
        return Reaction(ctx.say("help"), "help")
    if intent.kind not in NEEDS_STATE:
        return Reaction(ctx.say("not_understood"), "not_understood")
    if state is None:
        return Reaction(ctx.say("state_unavailable"), "state_unavailable")
    own = [driver_id, *(str(d["delivery_id"]) for d in _active(state))]
    if intent.kind == IntentKind.ORDERS_TODAY:
        return Reaction(guard_output(_orders_today(ctx, state), own, []), "orders_today")
    if intent.kind == IntentKind.ORDER_DETAILS:
        return Reaction(guard_output(_details(ctx, state, intent.order_ref or ""), own, []), "order_details")
    if intent.kind in ANNOTATING:
        alert = _annotated_alert(event, driver_id, state, intent.kind)
        if alert is not None:
            return Reaction(ctx.say(f"ack_{intent.kind}"), "alert_annotated", alert=alert)
    delivery = _target(state, intent.kind)
    if delivery is None:
        return Reaction(ctx.say("no_active_delivery"), "no_active_delivery")
    if intent.kind in ANNOTATING:
        record = _delivery_event(event, driver_id, delivery, "en_route", f"driver_reply:{intent.kind}")
        return Reaction(ctx.say(f"ack_{intent.kind}"), "delivery_noted", delivery_event=record)
    record = _delivery_event(event, driver_id, delivery, str(intent.kind), f"quick_reply:{intent.kind}")
    reply = ctx.say(f"ack_{intent.kind}", delivery_id=delivery["delivery_id"])
    return Reaction(reply, f"delivery_{intent.kind}", delivery_event=record)
