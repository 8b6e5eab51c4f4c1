"""The notification policy: thresholds, one message per window, the 24-hour window, keys from causes."""

from __future__ import annotations

from typing import Any

import pytest

from base.tracking import read_token
from connectors.whatsapp.catalogue import load_catalogue
from schemas.codecs import codec
from streams.notify.policy import (
    DAY_MS,
    CustomerMemory,
    NotifyConfig,
    Recipient,
    decide_alert,
    decide_delivered,
    decide_eta,
    decide_offer,
    decide_step,
    window_open,
)

CAT = load_catalogue()
SECRET = "tracking-secret-" + "s" * 16
CONFIG = NotifyConfig(eta_threshold_ms=300_000, customer_interval_ms=900_000, utc_offset_h=-3.0,
                      tracking_base_url="https://track.example", tracking_secret=SECRET)  # fmt: skip
T0 = 1_763_870_000_000  # 00:53 in São Paulo
CUSTOMER = Recipient("+5511912345678", "c" * 32, "pt-BR")
DRIVER = Recipient("+5511987654321", "d" * 32, "es")
MIN = 60_000


def _eta(eta: int, computed_at: int = T0, promised_at: int | None = T0 + 30 * MIN) -> dict[str, Any]:
    return {"delivery_id": "D-1", "driver_id": "d1", "eta": eta, "remaining_m": 1000.0, "speed_mps": 5.0,
            "method": "blended", "computed_at": computed_at, "promised_at": promised_at}  # fmt: skip


def _alert(kind: str, **extra: Any) -> dict[str, Any]:
    return {"alert_id": f"{kind}:d1:1", "kind": kind, "driver_id": "d1", "delivery_id": "D-1",
            "started_at": T0, "detected_at": T0 + MIN, "lat": -23.5, "lon": -46.6, "h3_r9": 1,
            "severity": "warning", "detail": "", **extra}  # fmt: skip


def _tracked(url: str, now: int) -> str | None:
    """The delivery a tracking link names, read as GET /t/{token} would."""
    assert url.startswith("https://track.example/t/")
    return read_token([SECRET], url.rsplit("/", 1)[1], now)


def _check(message: dict[str, Any] | None) -> dict[str, Any]:
    assert message is not None
    codec("OutboundMessage").encode(message)
    return message


def test_the_24_hour_window() -> None:
    assert window_open(T0 - DAY_MS + 1, T0, CONFIG)
    assert not window_open(T0 - DAY_MS, T0, CONFIG)
    assert not window_open(None, T0, CONFIG)
    assert not window_open(T0 + 1, T0, CONFIG)  # a clock from the future opens nothing


def test_a_small_eta_shift_from_the_promise_says_nothing() -> None:
    decision = decide_eta(_eta(T0 + 34 * MIN), CUSTOMER, CustomerMemory(), None, CAT, CONFIG)
    assert (decision.message, decision.reason) == (None, "small_shift")


def test_a_real_shift_is_told_once_then_only_a_further_real_shift_after_the_interval() -> None:
    first = decide_eta(_eta(T0 + 40 * MIN), CUSTOMER, CustomerMemory(), None, CAT, CONFIG)
    message = _check(first.message)
    assert (message["message_key"], message["reason"], message["to"]) == (
        f"eta:D-1:{T0}",
        "eta_update",
        CUSTOMER.phone,
    )
    assert message["params"][:2] == ["D-1", "01:33"] and message["language"] == "pt_BR"
    assert _tracked(message["params"][2], now=T0) == "D-1"
    assert message["text"] is None and message["template"] == "eta_update"  # no window: template only
    assert first.memory == CustomerMemory(T0 + 40 * MIN, T0)
    memory = first.memory
    assert memory is not None
    soon = decide_eta(_eta(T0 + 50 * MIN, computed_at=T0 + 5 * MIN), CUSTOMER, memory, None, CAT, CONFIG)
    assert (soon.message, soon.reason) == (None, "customer_interval")
    small = decide_eta(_eta(T0 + 42 * MIN, computed_at=T0 + 20 * MIN), CUSTOMER, memory, None, CAT, CONFIG)
    assert small.reason == "small_shift"
    later = decide_eta(_eta(T0 + 50 * MIN, computed_at=T0 + 20 * MIN), CUSTOMER, memory, None, CAT, CONFIG)
    assert _check(later.message)["message_key"] == f"eta:D-1:{T0 + 20 * MIN}"


def test_without_a_promise_the_first_eta_is_the_baseline() -> None:
    decision = decide_eta(
        _eta(T0 + 40 * MIN, promised_at=None), CUSTOMER, CustomerMemory(), None, CAT, CONFIG
    )
    assert (decision.message, decision.reason, decision.memory) == (
        None,
        "baseline",
        CustomerMemory(T0 + 40 * MIN),
    )


def test_inside_the_window_the_customer_gets_free_text_with_the_template_as_fallback() -> None:
    decision = decide_eta(_eta(T0 + 40 * MIN), CUSTOMER, CustomerMemory(), T0 - 3_600_000, CAT, CONFIG)
    message = _check(decision.message)
    assert message["text"].startswith(
        "Seu pedido D-1 tem nova previsão de chegada: 01:33. Acompanhe: https://"
    )
    assert message["template"] == "eta_update"


def test_no_customer_no_message() -> None:
    assert decide_eta(_eta(T0 + 90 * MIN), None, CustomerMemory(), None, CAT, CONFIG).reason == "no_customer"


def test_a_stall_sends_the_driver_a_check_in_with_quick_replies_in_their_language() -> None:
    decision = decide_alert(
        _alert("stall"), DRIVER, CUSTOMER, CustomerMemory(), {DRIVER.phone_hash: T0}, CAT, CONFIG
    )
    message = _check(decision.message)
    assert (message["message_key"], message["to"], message["reason"]) == (
        "stall_check:stall:d1:1",
        DRIVER.phone,
        "stall_check",
    )
    assert message["buttons"] == ["Tráfico", "Avería", "En pausa"]
    assert len(message["buttons"]) <= 3 and all(len(b) <= 20 for b in message["buttons"])
    assert message["text"] and message["language"] == "es"
    outside = decide_alert(_alert("stall"), DRIVER, None, CustomerMemory(), {}, CAT, CONFIG)
    assert _check(outside.message)["text"] is None
    assert (
        decide_alert(_alert("stall"), None, CUSTOMER, CustomerMemory(), {}, CAT, CONFIG).reason == "no_driver"
    )


def test_a_late_risk_tells_the_customer_once_per_interval() -> None:
    memory = CustomerMemory(last_eta=T0 + 45 * MIN)
    decision = decide_alert(_alert("late_risk"), DRIVER, CUSTOMER, memory, {}, CAT, CONFIG)
    message = _check(decision.message)
    assert (message["message_key"], message["params"][:2]) == ("delayed:late_risk:d1:1", ["D-1", "01:38"])
    assert _tracked(message["params"][2], now=T0) == "D-1"
    assert message["to"] == CUSTOMER.phone
    assert decision.memory == CustomerMemory(T0 + 45 * MIN, T0 + MIN)
    just_told = CustomerMemory(last_eta=T0, last_sent_at=T0)
    assert (
        decide_alert(_alert("late_risk"), DRIVER, CUSTOMER, just_told, {}, CAT, CONFIG).reason
        == "customer_interval"
    )


@pytest.mark.parametrize("kind", ["offline", "stall_resolved", "offline_resolved", "frozen_gps", "unknown"])
def test_other_alerts_send_nothing(kind: str) -> None:
    assert decide_alert(_alert(kind), DRIVER, CUSTOMER, CustomerMemory(), {}, CAT, CONFIG).message is None


def test_a_drivers_annotation_of_an_alert_sends_nothing_again() -> None:
    annotated = _alert("stall", detail="driver_reply:traffic")
    assert decide_alert(annotated, DRIVER, CUSTOMER, CustomerMemory(), {}, CAT, CONFIG).reason == "annotation"


def test_delivered_is_told_once_per_delivery_whoever_reported_it() -> None:
    api = {"event_id": "e1", "delivery_id": "D-1", "driver_id": "d1", "type": "delivered", "ts": T0}
    whatsapp = {**api, "event_id": "wa:wamid.9", "ts": T0 + 5_000}
    keys = {
        _check(decide_delivered(e, CUSTOMER, None, CAT, CONFIG).message)["message_key"]
        for e in (api, whatsapp)
    }
    assert keys == {"delivered:D-1"}
    assert decide_delivered({**api, "type": "en_route"}, CUSTOMER, None, CAT, CONFIG).message is None
    assert decide_delivered(api, None, None, CAT, CONFIG).reason == "no_customer"


def test_replaying_a_cause_gives_the_same_message() -> None:
    one = decide_eta(_eta(T0 + 40 * MIN), CUSTOMER, CustomerMemory(), None, CAT, CONFIG)
    two = decide_eta(_eta(T0 + 40 * MIN), CUSTOMER, CustomerMemory(), None, CAT, CONFIG)
    assert one == two


def _assigned(**extra: Any) -> dict[str, Any]:
    return {"event_id": "e1", "delivery_id": "D-1", "driver_id": "d1", "type": "assigned", "ts": T0,
            "pickup_lat": -23.5, "pickup_lon": -46.6, "dropoff_lat": -23.6, "dropoff_lon": -46.7,
            "promised_at": T0 + 30 * MIN, "customer_ref": "c-1", "pickup_address": "Loja 1, Rua A 10",
            "dropoff_address": "Av. B 200", "customer_name": "Ana Maria Souza", **extra}  # fmt: skip


def test_an_assignment_is_offered_to_its_driver_with_buttons_naming_the_delivery() -> None:
    decision = decide_offer(_assigned(), DRIVER, T0 - MIN, CAT, CONFIG)
    message = _check(decision.message)
    assert message["text"] == (
        "Nueva entrega D-1: recogida en Loja 1, Rua A 10, entrega para Ana en Av. B 200,"
        " prometido para las 01:23. ¿Aceptas?"
    )
    assert "Souza" not in message["text"] and message["to"] == DRIVER.phone
    assert (message["buttons"], message["button_ids"]) == (["Aceptar", "Rechazar"], ["acc:D-1", "dec:D-1"])
    assert message["template"] == "delivery_offer" and message["params"][0] == "D-1"
    assert message["message_key"] == "offer:D-1:e1" and message["reason"] == "delivery_offer"
    closed = _check(decide_offer(_assigned(), DRIVER, None, CAT, CONFIG).message)
    assert closed["text"] is None and closed["button_ids"] == ["acc:D-1", "dec:D-1"]


def test_no_offer_without_a_driver_or_for_another_step_and_plain_words_without_names() -> None:
    assert decide_offer(_assigned(), None, None, CAT, CONFIG).reason == "no_driver"
    assert decide_offer(_assigned(type="picked_up"), DRIVER, None, CAT, CONFIG).reason == "not_notified"
    bare = _assigned(customer_name=None, pickup_address=None, dropoff_address=None, promised_at=None)
    text = _check(decide_offer(bare, Recipient("+5511987654321", "d" * 32, "en"), T0, CAT, CONFIG).message)[
        "text"
    ]
    assert text == (
        "New delivery D-1: pickup at -23.50000,-46.60000, drop-off for the customer at -23.60000,-46.70000,"
        " no promised time. Do you accept?"
    )


def _step(kind: str, **extra: Any) -> dict[str, Any]:
    return {
        **_assigned(),
        "event_id": f"wa:{kind}",
        "type": kind,
        "ts": T0 + MIN,
        "source": "whatsapp",
        **extra,
    }


@pytest.mark.parametrize(
    ("kind", "extra", "text"),
    [
        ("picked_up", {}, "Your order D-1 was picked up by João and is about to head your way."),
        ("en_route", {"eta": T0 + 20 * MIN}, "João is on the way with your order D-1, expected at 01:13."),
        ("en_route", {"eta": None}, "João is on the way with your order D-1, no ETA yet."),
        ("failed", {"failure_reason": "wrong_address"},
         "We could not deliver your order D-1 (the address could not be found). Our team will contact you"),
    ],
)  # fmt: skip
def test_each_step_tells_the_customer_once_with_the_tracking_link(
    kind: str, extra: dict[str, Any], text: str
) -> None:
    customer = Recipient("+5511912345678", "c" * 32, "en")
    decision = decide_step(_step(kind, **extra), customer, "João", CustomerMemory(), T0, CAT, CONFIG)
    message = _check(decision.message)
    assert message["text"].startswith(text) and message["message_key"] == f"{kind}:D-1"
    assert _tracked(message["params"][-1], now=T0) == "D-1" and message["params"][-1] in message["text"]
    assert "+55119876" not in message["text"]  # never the driver's phone
    assert (
        decide_step(_step(kind, **extra), None, "João", CustomerMemory(), T0, CAT, CONFIG).reason
        == "no_customer"
    )


def test_steps_that_tell_the_customer_nothing_and_a_nameless_driver() -> None:
    customer = Recipient("+5511912345678", "c" * 32, "pt-BR")
    for kind in ("assigned", "accepted", "declined", "arrived", "cancelled"):
        assert (
            decide_step(_step(kind), customer, "", CustomerMemory(), T0, CAT, CONFIG).reason == "not_notified"
        )
    nameless = decide_step(_step("picked_up"), customer, "", CustomerMemory(), T0, CAT, CONFIG)
    assert _check(nameless.message)["text"].startswith("Seu pedido D-1 foi coletado por seu entregador")


def test_near_the_door_an_eta_update_says_arriving_once_and_eta_messages_stop() -> None:
    near = {**_eta(T0 + 33 * MIN), "remaining_m": 300.0}
    decision = decide_eta(near, CUSTOMER, CustomerMemory(), None, CAT, CONFIG, "João")
    message = _check(decision.message)
    assert (message["message_key"], message["template"]) == ("arriving:D-1", "delivery_arriving")
    assert (
        message["params"][:2] == ["D-1", "João"] and decision.memory is not None and decision.memory.arriving
    )
    later = decide_eta(
        {**_eta(T0 + 60 * MIN, computed_at=T0 + 30 * MIN)}, CUSTOMER, decision.memory, None, CAT, CONFIG
    )
    assert (later.message, later.reason) == (None, "arriving_told")
