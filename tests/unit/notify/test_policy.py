"""The notification policy: thresholds, one message per window, the 24-hour window, keys from causes."""

from __future__ import annotations

from typing import Any

import pytest

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
    window_open,
)

CAT = load_catalogue()
CONFIG = NotifyConfig(eta_threshold_ms=300_000, customer_interval_ms=900_000, utc_offset_h=-3.0)
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
    assert message["params"] == ["D-1", "01:33"] and message["language"] == "pt_BR"
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
    assert message["text"] == "Seu pedido D-1 tem nova previsão de chegada: 01:33."
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
    assert (message["message_key"], message["params"]) == ("delayed:late_risk:d1:1", ["D-1", "01:38"])
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
