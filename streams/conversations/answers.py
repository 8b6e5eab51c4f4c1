"""What the pipeline answers and does for a driver's message. Pure: state in, records and a reply out.

The driver's state is the dispatcher API's JSON for ``GET /v1/drivers/{id}`` (``None`` when it could not be
read). Every step of a delivery can be told in the chat: accept or decline an assignment, picked up, on the
way, arrived, delivered (a photo, or a location shared at the door, is kept as its proof, by reference),
failed with a reason from a list. Each becomes a DeliveryEvent that the tracking agent's state machine
judges like any other: the chat only picks the delivery, never decides the step is valid.

Which delivery: the one a button or "pedido 2" names; else the one whose status the step follows, the most
advanced first (delivered goes to the delivery at its door before one on its way); when two are equally
likely, the driver is asked which, with a numbered list. Numbered lists and buttons set the conversation
context (``context.py``); a bare number answers the last one. ``traffic``, ``breakdown`` and ``on_break``
annotate the driver's open alert (the same ``alert_id`` again, with the reply in ``detail``) or, with no
open alert, become an ``en_route`` DeliveryEvent carrying the reply as its note. A location share becomes
a GpsPing with source ``whatsapp``. Every record's id derives from the WhatsApp message id, so a replayed
message produces the same records.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from connectors.whatsapp.catalogue import Catalogue, local_clock
from connectors.whatsapp.chat import ChatContext, at_door, options
from connectors.whatsapp.registry import Driver
from streams.conversations.guardrails import guard_output
from streams.conversations.intents import FAILURE_REASONS, Intent, IntentKind, classify
from streams.deliveries.state import ALLOWED, Status, first_name

ANNOTATING = {IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK}
# The delivery step each intent asks for, and the statuses it may follow, the likeliest first.
STEPS: dict[IntentKind, tuple[Status, tuple[str, ...]]] = {
    IntentKind.ACCEPT: (Status.ACCEPTED, ("assigned",)),
    IntentKind.DECLINE: (Status.DECLINED, ("assigned",)),
    IntentKind.PICKED_UP: (Status.PICKED_UP, ("accepted", "assigned")),
    IntentKind.ON_THE_WAY: (Status.EN_ROUTE, ("picked_up", "arrived")),
    IntentKind.ARRIVED: (Status.ARRIVED, ("en_route", "picked_up")),
    IntentKind.DELIVERED: (Status.DELIVERED, ("arrived", "en_route", "picked_up")),
    IntentKind.FAILED: (Status.FAILED, ("arrived", "en_route", "picked_up", "accepted", "assigned")),
}
NEEDS_STATE = {IntentKind.ORDERS_TODAY, IntentKind.ORDER_DETAILS, IntentKind.PHOTO} | set(STEPS) | ANNOTATING
ALERT_KINDS = {"stall", "offline", "late_risk", "frozen_gps"}


@dataclass(frozen=True)
class Reaction:
    """A reply to the driver, the records the message causes, and what becomes of the chat's context.

    ``context`` replaces the driver's context when ``sets_context`` (None clears it). ``buttons`` are
    (payload, title) pairs. ``refusal`` names why a message changed nothing (logged and counted).
    """

    reply: str
    outcome: str
    delivery_event: dict[str, Any] | None = None
    alert: dict[str, Any] | None = None
    ping: dict[str, Any] | None = None
    buttons: tuple[tuple[str, str], ...] = ()
    context: ChatContext | None = None
    sets_context: bool = False
    refusal: str | None = None


@dataclass(frozen=True)
class Context:
    """Who wrote, in which words to answer, and how to show times (the driver's zone, else the offset)."""

    driver: Driver
    catalogue: Catalogue
    utc_offset_h: float = -3.0

    def say(self, name: str, **params: Any) -> str:
        return self.catalogue.render(name, self.driver.language, **params)

    def clock(self, ms: int | None) -> str:
        if ms is None:
            return self.say("unknown_value")
        zone = getattr(self.driver, "zone", "")
        if zone:
            try:
                return datetime.fromtimestamp(ms / 1000, UTC).astimezone(ZoneInfo(zone)).strftime("%H:%M")
            except (ZoneInfoNotFoundError, ValueError):
                pass
        return local_clock(ms, self.utc_offset_h)

    def eta(self, ms: Any) -> str:
        return self.say("eta_at", time=self.clock(ms)) if isinstance(ms, int) else self.say("no_eta")

    def promised(self, ms: Any) -> str:
        return self.say("promised_at", time=self.clock(ms)) if isinstance(ms, int) else self.say("no_promise")


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
    wanted = ref.upper()
    for delivery in deliveries:
        if str(delivery["delivery_id"]).upper() == wanted:
            return delivery
    if ref.isdigit() and 1 <= int(ref) <= len(deliveries):
        return deliveries[int(ref) - 1]
    matches = [d for d in deliveries if str(d["delivery_id"]).upper().endswith(wanted)]
    return matches[0] if len(matches) == 1 else None


def _status_word(ctx: Context, status: Any) -> str:
    name = f"status_{status}"
    return ctx.say(name if name in ctx.catalogue.replies else "status_unknown")


def _place(delivery: dict[str, Any], kind: str) -> str:
    """The address the order system gave, else the coordinates."""
    address = delivery.get(f"{kind}_address")
    if isinstance(address, str) and address:
        return address
    point = delivery.get(kind)
    if (
        isinstance(point, dict)
        and isinstance(point.get("lat"), int | float)
        and isinstance(point.get("lon"), int | float)
    ):
        return f"{point['lat']:.5f},{point['lon']:.5f}"
    return "?"


def _customer(ctx: Context, delivery: dict[str, Any]) -> str:
    name = delivery.get("customer_first_name")
    return (isinstance(name, str) and first_name(name)) or ctx.say("someone")


def _line(ctx: Context, index: int, delivery: dict[str, Any]) -> str:
    return ctx.say(
        "order_line",
        index=index,
        delivery_id=delivery["delivery_id"],
        customer=_customer(ctx, delivery),
        dropoff=_place(delivery, "dropoff"),
        status=_status_word(ctx, delivery.get("status")),
        eta=ctx.eta(delivery.get("eta")),
    )


def _orders_today(ctx: Context, state: dict[str, Any], at: int) -> Reaction:
    deliveries = _active(state)
    if not deliveries:
        return Reaction(ctx.say("no_orders"), "orders_today", sets_context=True)
    lines = "\n".join(_line(ctx, i, d) for i, d in enumerate(deliveries, start=1))
    listed = options(*(f"det:{d['delivery_id']}" for d in deliveries), at=at)
    reply = ctx.say("orders_today", count=len(deliveries), lines=lines)
    return Reaction(reply, "orders_today", context=listed, sets_context=True)


def details(ctx: Context, delivery: dict[str, Any]) -> str:
    """The words of one delivery's details."""
    return ctx.say(
        "order_details",
        delivery_id=delivery["delivery_id"],
        customer=_customer(ctx, delivery),
        status=_status_word(ctx, delivery.get("status")),
        pickup=_place(delivery, "pickup"),
        dropoff=_place(delivery, "dropoff"),
        promised=ctx.promised(delivery.get("promised_at")),
        eta=ctx.eta(delivery.get("eta")),
    )


def _delivery_event(
    event: dict[str, Any], driver_id: str, delivery: dict[str, Any], kind: str, note: str, **extra: Any
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
        **extra,
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


def _annotate(ctx: Context, intent: Intent, event: dict[str, Any], state: dict[str, Any]) -> Reaction:
    driver_id = ctx.driver.driver_id
    alert = _annotated_alert(event, driver_id, state, intent.kind)
    if alert is not None:
        return Reaction(ctx.say(f"ack_{intent.kind}"), "alert_annotated", alert=alert)
    deliveries = _active(state)
    carried = next((d for d in deliveries if d.get("status") in ("picked_up", "en_route", "arrived")), None)
    delivery = carried or (deliveries[0] if deliveries else None)
    if delivery is None:
        return Reaction(ctx.say("no_active_delivery"), "no_active_delivery")
    record = _delivery_event(event, driver_id, delivery, "en_route", f"driver_reply:{intent.kind}")
    return Reaction(ctx.say(f"ack_{intent.kind}"), "delivery_noted", delivery_event=record)


def _may(delivery: dict[str, Any], step: Status) -> bool:
    try:
        return step in ALLOWED.get(Status(str(delivery.get("status"))), frozenset())
    except ValueError:
        return False


def _candidates(state: dict[str, Any], kind: IntentKind) -> list[dict[str, Any]]:
    """The deliveries the step may be about: those of the likeliest status that has any."""
    deliveries = _active(state)
    for status in STEPS[kind][1]:
        found = [d for d in deliveries if d.get("status") == status]
        if found:
            return found
    return []


def _option_payload(intent: Intent, delivery_id: str) -> str:
    if intent.kind == IntentKind.FAILED and intent.failure_reason:
        return f"fail:{intent.failure_reason}:{delivery_id}"
    return f"do:{intent.kind}:{delivery_id}"


def _ask_which(
    ctx: Context, intent: Intent, found: list[dict[str, Any]], proof: str | None, at: int
) -> Reaction:
    lines = "\n".join(_line(ctx, i, d) for i, d in enumerate(found, start=1))
    listed = options(*(_option_payload(intent, str(d["delivery_id"])) for d in found), proof_ref=proof, at=at)
    return Reaction(ctx.say("ask_which", lines=lines), "asked_which", context=listed, sets_context=True)


def _ask_reason(ctx: Context, delivery: dict[str, Any], at: int) -> Reaction:
    delivery_id = str(delivery["delivery_id"])
    reasons = (*FAILURE_REASONS, "other")
    lines = "\n".join(
        ctx.say("choice_line", index=i, text=ctx.say(f"reason_{r}")) for i, r in enumerate(reasons, start=1)
    )
    listed = options(*(f"fail:{r}:{delivery_id}" for r in reasons), at=at)
    reply = ctx.say("ask_fail_reason", delivery_id=delivery_id, lines=lines)
    return Reaction(reply, "asked_reason", context=listed, sets_context=True)


def _step(
    ctx: Context,
    intent: Intent,
    event: dict[str, Any],
    state: dict[str, Any],
    proof: str | None = None,
) -> Reaction:
    """A delivery step told in the chat: find its delivery (or ask which), then the event and the reply."""
    step, _ = STEPS[intent.kind]
    at = int(event["ts"])
    if intent.order_ref:
        delivery = find_delivery(state, intent.order_ref)
        if delivery is None:
            reply = ctx.say("order_not_found", ref=intent.order_ref)
            return Reaction(reply, "order_not_found", sets_context=True, refusal="unknown_delivery")
        if not _may(delivery, step):
            reply = ctx.say(
                "step_not_possible",
                delivery_id=delivery["delivery_id"],
                status=_status_word(ctx, delivery.get("status")),
                step=_status_word(ctx, step),
            )
            return Reaction(reply, "step_not_possible", sets_context=True, refusal="impossible_step")
    else:
        found = _candidates(state, intent.kind)
        if not found:
            if intent.kind == IntentKind.DELIVERED and proof is not None:
                return Reaction(ctx.say("photo_without_delivery"), "no_active_delivery")
            return Reaction(ctx.say("no_active_delivery"), "no_active_delivery")
        if len(found) > 1:
            return _ask_which(ctx, intent, found, proof, at)
        delivery = found[0]
    if intent.kind == IntentKind.FAILED and intent.failure_reason is None:
        return _ask_reason(ctx, delivery, at)
    delivery_id = str(delivery["delivery_id"])
    extra: dict[str, Any] = {}
    if intent.kind == IntentKind.FAILED:
        extra["failure_reason"] = intent.failure_reason
    if proof is not None and intent.kind in (IntentKind.DELIVERED, IntentKind.FAILED):
        extra["proof_ref"] = proof
    record = _delivery_event(event, ctx.driver.driver_id, delivery, str(step), f"chat:{intent.kind}", **extra)
    outcome = f"delivery_{step}"
    if intent.kind == IntentKind.ARRIVED:
        reply = ctx.say("ack_arrived", delivery_id=delivery_id)
        return Reaction(
            reply, outcome, delivery_event=record, context=at_door(delivery_id, at), sets_context=True
        )
    if intent.kind == IntentKind.FAILED:
        reason = ctx.say(f"reason_{intent.failure_reason}")
        reply = ctx.say("ack_failed", delivery_id=delivery_id, reason=reason)
    elif intent.kind == IntentKind.DELIVERED and proof is not None:
        reply = ctx.say("ack_delivered_proof", delivery_id=delivery_id)
    else:
        name = {IntentKind.ACCEPT: "ack_accepted", IntentKind.DECLINE: "ack_declined"}.get(
            intent.kind, f"ack_{intent.kind}"
        )
        reply = ctx.say(
            name,
            delivery_id=delivery_id,
            pickup=_place(delivery, "pickup"),
            dropoff=_place(delivery, "dropoff"),
        )
    return Reaction(reply, outcome, delivery_event=record, sets_context=True)


def _choice(ctx: Context, intent: Intent, chat: ChatContext | None) -> tuple[Intent | None, Reaction | None]:
    """Turn "2" into the intent of the option it picks, or the refusal when it picks nothing."""
    if chat is None or chat.kind != "options" or not chat.options:
        return None, Reaction(ctx.say("no_question"), "no_question", refusal="stale_context")
    payload = chat.option(intent.choice or 0)
    if payload is None:
        reply = ctx.say("choice_out_of_range", count=len(chat.options))
        return None, Reaction(reply, "choice_out_of_range", refusal="choice_out_of_range")
    picked = classify(None, payload)
    if picked.kind in (IntentKind.UNKNOWN, IntentKind.UNKNOWN_BUTTON, IntentKind.CHOICE):
        return None, Reaction(ctx.say("button_expired"), "button_expired", refusal="unknown_button")
    return picked, None


def _proof_of(event: dict[str, Any]) -> str | None:
    """The reference of an image's media (never its bytes), or of a shared location."""
    if event.get("type") == "location" and event.get("lat") is not None and event.get("lon") is not None:
        return f"location:{event['lat']:.5f},{event['lon']:.5f}"
    try:
        media = json.loads(event.get("payload") or "{}").get("media_id")
    except (ValueError, AttributeError):
        return None
    return f"media:{media}" if isinstance(media, str) and media else None


def respond(
    intent: Intent,
    event: dict[str, Any],
    state: dict[str, Any] | None,
    ctx: Context,
    chat: ChatContext | None = None,
) -> Reaction:
    """Return the reply to a driver's message, the records it causes, and the chat context it leaves."""
    driver_id = ctx.driver.driver_id
    proof = chat.proof_ref if chat is not None else None
    if intent.kind == IntentKind.CHOICE:
        picked, refused = _choice(ctx, intent, chat)
        if refused is not None:
            return refused
        assert picked is not None
        intent = picked
    if intent.kind == IntentKind.UNKNOWN_BUTTON:
        return Reaction(ctx.say("button_expired"), "button_expired", refusal="unknown_button")
    if intent.kind == IntentKind.LOCATION:
        ping = location_ping(event, driver_id)
        if chat is None or chat.kind != "at_door" or state is None or chat.delivery_id is None:
            return Reaction(ctx.say("location_received"), "ping", ping=ping)
        door = Intent(IntentKind.DELIVERED, chat.delivery_id)
        done = _step(ctx, door, event, state, proof=_proof_of(event))
        return replace(done, ping=ping) if done.delivery_event else Reaction(done.reply, "ping", ping=ping)
    if intent.kind == IntentKind.HELP:
        return Reaction(ctx.say("help"), "help")
    if intent.kind not in NEEDS_STATE:
        return Reaction(ctx.say("not_understood"), "not_understood")
    if state is None:
        return Reaction(ctx.say("state_unavailable"), "state_unavailable")
    own = [driver_id, *(str(d["delivery_id"]) for d in _active(state))]
    if intent.kind == IntentKind.ORDERS_TODAY:
        listed = _orders_today(ctx, state, int(event["ts"]))
        return replace(listed, reply=guard_output(listed.reply, own, []))
    if intent.kind == IntentKind.ORDER_DETAILS:
        delivery = find_delivery(state, intent.order_ref or "")
        if delivery is None:
            return Reaction(ctx.say("order_not_found", ref=intent.order_ref), "order_not_found")
        return Reaction(guard_output(details(ctx, delivery), own, []), "order_details")
    if intent.kind in ANNOTATING:
        return _annotate(ctx, intent, event, state)
    if intent.kind == IntentKind.PHOTO:
        proof = _proof_of(event)
        caption = classify(event.get("text"))
        kind = IntentKind.FAILED if caption.kind == IntentKind.FAILED else IntentKind.DELIVERED
        at = chat.delivery_id if chat is not None and chat.kind == "at_door" else None
        intent = Intent(kind, caption.order_ref or at, failure_reason=caption.failure_reason)
    return _step(ctx, intent, event, state, proof=proof)


def guardrail_alert(
    event: dict[str, Any], driver_id: str, reason: str, state: dict[str, Any] | None
) -> dict[str, Any]:
    """Return the alert a blocked message raises: one incident per driver and hour, however many messages
    (at the driver's last fix, or 0,0 when none is known)."""
    fix = (state or {}).get("last_fix")
    fix = fix if isinstance(fix, dict) and fix.get("lat") is not None and fix.get("lon") is not None else {}
    hour = int(event["ts"]) // 3_600_000
    return {
        "alert_id": f"guardrail:{driver_id}:{hour}",
        "kind": "guardrail",
        "driver_id": driver_id,
        "delivery_id": None,
        "started_at": hour * 3_600_000,
        "detected_at": event["ts"],
        "lat": float(fix.get("lat", 0.0)),
        "lon": float(fix.get("lon", 0.0)),
        "h3_r9": int(fix.get("h3_r9") or 0),
        "severity": "warning",
        "detail": f"reason:{reason}",
    }


def assisted(
    ctx: Context,
    event: dict[str, Any],
    state: dict[str, Any] | None,
    *,
    grade: str | None,
    reason: str | None,
    unavailable: bool,
    reply: str | None,
) -> Reaction | None:
    """Return the reaction the language model's path decides on its own (a guardrail's warning or block,
    the assistant being unavailable when failing closed, the model's own reply), or None to go on."""
    driver_id = ctx.driver.driver_id
    if grade == "block":
        alert = guardrail_alert(event, driver_id, reason or "blocked", state)
        return Reaction(
            ctx.say("guardrail_block"), "guardrail_blocked", alert=alert, refusal=f"guardrail:{reason}"
        )
    if grade == "warn":
        return Reaction(ctx.say("guardrail_warn"), "guardrail_warned", refusal=f"guardrail:{reason}")
    if unavailable:
        return Reaction(
            ctx.say("assistant_unavailable"), "assistant_unavailable", refusal="assistant_unavailable"
        )
    if reply:
        return Reaction(reply, "assistant_reply")
    return None
