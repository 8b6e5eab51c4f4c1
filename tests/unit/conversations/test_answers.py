"""Answers and records built from the dispatcher API's driver state (a plain dict, as the API returns)."""

from __future__ import annotations

from typing import Any

import pytest

from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.registry import Driver
from schemas.codecs import codec
from streams.conversations.answers import Context, find_delivery, location_ping, respond
from streams.conversations.intents import Intent, IntentKind

T0 = 1_763_870_000_000  # 03:53:20 UTC, 00:53 in São Paulo (UTC-3)


def _state(**extra: Any) -> dict[str, Any]:
    return {
        "driver_id": "d1",
        "status": "on_delivery",
        "last_fix": {"lat": -23.56, "lon": -46.65, "ts": T0, "h3_r9": 617733123, "accuracy_m": 8.0},
        "last_update": T0,
        "active_deliveries": [
            {"delivery_id": "D-1001", "status": "en_route", "pickup": {"lat": -23.5, "lon": -46.6},
             "dropoff": {"lat": -23.6, "lon": -46.7}, "promised_at": T0 + 1_800_000, "eta": T0 + 1_200_000,
             "customer_ref": "c1"},
            {"delivery_id": "D-1002", "status": "assigned", "pickup": {"lat": -23.5, "lon": -46.6},
             "dropoff": {"lat": -23.7, "lon": -46.8}, "promised_at": None, "eta": None, "customer_ref": None},
        ],
        "open_alerts": [],
        **extra,
    }  # fmt: skip


EVENT = {"message_id": "wamid.X1", "ts": T0 + 5_000, "received_ts": T0 + 6_000, "lat": None, "lon": None}


def _ctx(language: str = "pt-BR") -> Context:
    return Context(Driver("d1", "+5511987654321", "active", language), load_catalogue(), utc_offset_h=-3.0)


def test_orders_today_lists_each_active_delivery_with_local_eta() -> None:
    reaction = respond(Intent(IntentKind.ORDERS_TODAY), EVENT, _state(), _ctx())
    assert reaction.outcome == "orders_today"
    assert "2 pedido(s)" in reaction.reply
    assert "1. D-1001 para o cliente, -23.60000,-46.70000: a caminho, previsão 01:13" in reaction.reply
    assert "2. D-1002 para o cliente, -23.70000,-46.80000: atribuído, ainda sem previsão" in reaction.reply
    assert "previsão sem previsão" not in reaction.reply
    assert reaction.delivery_event is None and reaction.alert is None and reaction.ping is None


@pytest.mark.parametrize(
    ("language", "fragment"),
    [("en", "You have 2 active order(s)"), ("es", "Tienes 2 pedido(s) activo(s)")],
)
def test_answers_come_in_the_drivers_language(language: str, fragment: str) -> None:
    assert fragment in respond(Intent(IntentKind.ORDERS_TODAY), EVENT, _state(), _ctx(language)).reply


def test_no_active_orders() -> None:
    reply = respond(Intent(IntentKind.ORDERS_TODAY), EVENT, _state(active_deliveries=[]), _ctx("en")).reply
    assert reply == "You have no active orders right now."


@pytest.mark.parametrize(("ref", "found"), [("1", "D-1001"), ("2", "D-1002"), ("D-1002", "D-1002"),
                                            ("1002", "D-1002"), ("3", None), ("D-9", None)])  # fmt: skip
def test_an_order_is_found_by_position_id_or_id_suffix(ref: str, found: str | None) -> None:
    delivery = find_delivery(_state(), ref)
    assert (delivery["delivery_id"] if delivery else None) == found


def test_order_details_and_an_order_that_is_not_the_drivers() -> None:
    reply = respond(Intent(IntentKind.ORDER_DETAILS, "1"), EVENT, _state(), _ctx("en")).reply
    assert reply.startswith("Order D-1001 for the customer: on the way.\nPickup: -23.50000,-46.60000")
    assert "promised for 01:23, ETA 01:13" in reply
    missing = respond(Intent(IntentKind.ORDER_DETAILS, "D-7777"), EVENT, _state(), _ctx("es")).reply
    assert "No encontré el pedido D-7777" in missing


@pytest.mark.parametrize(
    ("kind", "target"), [(IntentKind.DELIVERED, "D-1001"), (IntentKind.ARRIVED, "D-1001")]
)
def test_arrived_and_delivered_become_delivery_events_on_the_current_delivery(
    kind: IntentKind, target: str
) -> None:
    reaction = respond(Intent(kind), EVENT, _state(), _ctx())
    event = reaction.delivery_event
    assert event is not None
    codec("DeliveryEvent").encode(event)
    assert (event["event_id"], event["delivery_id"], event["driver_id"], event["type"]) == (
        "wa:wamid.X1", target, "d1", str(kind)
    )  # fmt: skip
    assert (event["source"], event["ts"], event["customer_ref"]) == ("whatsapp", T0 + 5_000, "c1")
    assert target in reaction.reply


def test_delivered_prefers_the_delivery_already_at_its_destination() -> None:
    state = _state()
    state["active_deliveries"][1]["status"] = "arrived"
    assert (
        respond(Intent(IntentKind.DELIVERED), EVENT, state, _ctx()).delivery_event["delivery_id"] == "D-1002"
    )  # type: ignore[index]


@pytest.mark.parametrize("kind", [IntentKind.TRAFFIC, IntentKind.BREAKDOWN, IntentKind.ON_BREAK])
def test_traffic_breakdown_and_breaks_annotate_the_open_alert(kind: IntentKind) -> None:
    alerts = [{"alert_id": "stall:d1:1", "kind": "stall", "started_at": T0 - 600_000},
              {"alert_id": "late:D-1001", "kind": "late_risk", "started_at": T0 - 60_000}]  # fmt: skip
    reaction = respond(Intent(kind), EVENT, _state(open_alerts=alerts), _ctx("en"))
    alert = reaction.alert
    assert alert is not None and reaction.delivery_event is None
    codec("Alert").encode(alert)
    assert (alert["alert_id"], alert["kind"], alert["detail"]) == (
        "late:D-1001",
        "late_risk",
        f"driver_reply:{kind}",
    )
    assert alert["severity"] == ("critical" if kind == IntentKind.BREAKDOWN else "warning")
    assert (alert["lat"], alert["h3_r9"], alert["detected_at"]) == (-23.56, 617733123, T0 + 5_000)


def test_without_an_open_alert_a_traffic_reply_is_noted_on_the_delivery() -> None:
    reaction = respond(Intent(IntentKind.TRAFFIC), EVENT, _state(), _ctx())
    assert reaction.alert is None and reaction.delivery_event is not None
    assert (reaction.delivery_event["type"], reaction.delivery_event["note"]) == (
        "en_route",
        "driver_reply:traffic",
    )


def test_quick_replies_without_a_delivery_change_nothing() -> None:
    for kind in (IntentKind.DELIVERED, IntentKind.TRAFFIC):
        reaction = respond(Intent(kind), EVENT, _state(active_deliveries=[]), _ctx("en"))
        assert reaction.outcome == "no_active_delivery" and reaction.delivery_event is None


def test_unreadable_state_is_said_not_guessed() -> None:
    reaction = respond(Intent(IntentKind.DELIVERED), EVENT, None, _ctx("en"))
    assert reaction.outcome == "state_unavailable" and reaction.delivery_event is None


def test_help_unknown_and_location() -> None:
    assert '"meus pedidos"' in respond(Intent(IntentKind.HELP), EVENT, None, _ctx()).reply
    assert respond(Intent(IntentKind.UNKNOWN), EVENT, None, _ctx()).outcome == "not_understood"
    shared = {**EVENT, "lat": -23.5614, "lon": -46.6559}
    reaction = respond(Intent(IntentKind.LOCATION), shared, None, _ctx())
    assert reaction.ping == location_ping(shared, "d1")
    ping = codec("GpsPing").decode(codec("GpsPing").encode(reaction.ping))
    assert (ping["ping_id"], ping["source"], ping["seq"], ping["device_ts"]) == (
        "wa:wamid.X1",
        "whatsapp",
        None,
        T0 + 5_000,
    )
