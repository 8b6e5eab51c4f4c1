"""Dispatch hears of assignments: one not accepted in time, one declined, one failed at the door; and the
applied record carries the delivery as it stands."""

from __future__ import annotations

from typing import Any

from schemas.codecs import codec
from streams.deliveries.state import Delivery, DriverState
from streams.deliveries.tracker import TrackerConfig, applied_record, on_event, on_tick

T0 = 1_790_000_000_000
DRIVER = "drv-1"
CONFIG = TrackerConfig(accept_timeout_ms=180_000)


def event(kind: str, event_id: str, ts: int = T0, **extra: Any) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "delivery_id": "dlv-1",
        "driver_id": DRIVER,
        "type": kind,
        "ts": ts,
        **extra,
    }


def assigned(state: DriverState) -> None:
    result, alerts = on_event(
        state,
        DRIVER,
        event(
            "assigned",
            "e1",
            pickup_lat=-23.4,
            pickup_lon=-46.5,
            dropoff_lat=-23.6,
            dropoff_lon=-46.7,
            customer_ref="c-1",
            customer_name="Ana Souza",
            dropoff_address="Av. B 200",
        ),
        T0,
        CONFIG,
    )
    assert isinstance(result, Delivery) and alerts == []


def test_an_assignment_not_accepted_in_time_alerts_once_and_acceptance_closes_it() -> None:
    state = DriverState()
    assigned(state)
    assert on_tick(state, DRIVER, T0 + 179_000, CONFIG) == []
    [alert] = on_tick(state, DRIVER, T0 + 181_000, CONFIG)
    codec("Alert").encode(alert)
    assert (alert["kind"], alert["delivery_id"], alert["started_at"]) == ("unaccepted", "dlv-1", T0)
    assert (alert["lat"], alert["lon"]) == (-23.4, -46.5)  # no fix yet: where the order waits
    assert on_tick(state, DRIVER, T0 + 240_000, CONFIG) == []  # once
    assert "unaccepted:dlv-1" in state.alerts
    on_event(state, DRIVER, event("accepted", "e2", T0 + 250_000), T0 + 250_000, CONFIG)
    assert "unaccepted:dlv-1" not in state.alerts
    assert on_tick(state, DRIVER, T0 + 400_000, CONFIG) == []


def test_a_zero_timeout_and_a_started_delivery_never_alert() -> None:
    state = DriverState()
    assigned(state)
    assert on_tick(state, DRIVER, T0 + 600_000, TrackerConfig(accept_timeout_ms=0)) == []
    on_event(state, DRIVER, event("picked_up", "e2", T0 + 60_000), T0 + 60_000, CONFIG)
    assert on_tick(state, DRIVER, T0 + 600_000, CONFIG) == []


def test_a_decline_and_a_failure_tell_dispatch_with_deterministic_ids() -> None:
    state = DriverState()
    assigned(state)
    result, [declined] = on_event(state, DRIVER, event("declined", "e2", T0 + 5_000), T0 + 5_000, CONFIG)
    assert isinstance(result, Delivery) and state.deliveries == {}
    assert (declined["kind"], declined["delivery_id"], declined["detail"]) == (
        "declined",
        "dlv-1",
        "declined by the driver",
    )
    again = DriverState()
    assigned(again)
    _, [same] = on_event(again, DRIVER, event("declined", "e2", T0 + 5_000), T0 + 9_000, CONFIG)
    assert same["alert_id"] == declined["alert_id"]
    failing = DriverState()
    assigned(failing)
    on_event(failing, DRIVER, event("picked_up", "e2", T0 + 1_000), T0 + 1_000, CONFIG)
    failed = event("failed", "e3", T0 + 2_000, failure_reason="not_home")
    _, [alert] = on_event(failing, DRIVER, failed, T0 + 2_000, CONFIG)
    assert (alert["kind"], alert["detail"], alert["severity"]) == (
        "delivery_failed",
        "reason:not_home",
        "warning",
    )
    codec("Alert").encode(alert)


def test_the_applied_record_carries_the_delivery_as_it_stands() -> None:
    state = DriverState()
    assigned(state)
    source = event("en_route", "e2", T0 + 1_000, source="whatsapp")
    on_event(state, DRIVER, event("picked_up", "e9", T0 + 500), T0 + 500, CONFIG)
    result, _ = on_event(state, DRIVER, source, T0 + 1_000, CONFIG)
    assert isinstance(result, Delivery)
    result.eta = T0 + 600_000
    record = codec("DeliveryEvent").decode(codec("DeliveryEvent").encode(applied_record(source, result)))
    assert (record["type"], record["source"], record["customer_ref"]) == ("en_route", "whatsapp", "c-1")
    assert (record["customer_name"], record["dropoff_address"], record["eta"]) == (
        "Ana Souza",
        "Av. B 200",
        T0 + 600_000,
    )
    assert (record["pickup_lat"], record["dropoff_lon"], record["failure_reason"]) == (-23.4, -46.7, None)


def test_the_applied_record_is_written_whatever_version_its_source_claimed() -> None:
    state = DriverState()
    assigned(state)
    source = event("accepted", "e2", T0 + 1_000, schema_version=6_442_450_943)
    result, _ = on_event(state, DRIVER, source, T0 + 1_000, CONFIG)
    assert isinstance(result, Delivery)
    record = codec("DeliveryEvent").decode(codec("DeliveryEvent").encode(applied_record(source, result)))
    assert record["type"] == "accepted" and record["schema_version"] == 3
