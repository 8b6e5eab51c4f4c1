"""The delivery state machine and the driver state: every transition, every rejection, packing, bounds."""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.deliveries.state import (
    ALLOWED,
    MAX_ACTIVE,
    MAX_EVENT_HASHES,
    MAX_FINISHED,
    TERMINAL,
    Delivery,
    DriverState,
    LastFix,
    Reason,
    Rejection,
    Status,
    apply_event,
)

T0 = 1_790_000_000_000
_counter = iter(range(10**9))


def event(kind: str, delivery_id: str = "dlv-1", **extra: Any) -> dict[str, Any]:
    base = {
        "event_id": f"evt-{next(_counter)}",
        "delivery_id": delivery_id,
        "driver_id": "drv-1",
        "type": kind,
        "ts": T0,
        "pickup_lat": None,
        "pickup_lon": None,
        "dropoff_lat": None,
        "dropoff_lon": None,
        "promised_at": None,
        "customer_ref": None,
    }
    if kind == "assigned":
        base.update(pickup_lat=-23.55, pickup_lon=-46.63, dropoff_lat=-23.58, dropoff_lon=-46.66)
        base.update(promised_at=T0 + 1_800_000, customer_ref="cust-9")
    return {**base, **extra}


def walk(*kinds: str) -> tuple[DriverState, Rejection | Delivery]:
    state = DriverState()
    result: Rejection | Delivery = apply_event(state, event("assigned"))
    for kind in kinds:
        result = apply_event(state, event(kind))
    return state, result


def test_assignment_creates_an_active_delivery() -> None:
    state, delivery = walk()
    assert isinstance(delivery, Delivery)
    assert delivery.status == "assigned" and delivery.pickup == (-23.55, -46.63)
    assert delivery.promised_at == T0 + 1_800_000 and delivery.customer_ref == "cust-9"
    assert state.status() == "on_delivery" and state.in_transit() is None


def test_happy_path_ends_in_finished_and_idle() -> None:
    state, result = walk("picked_up", "en_route", "arrived", "delivered")
    assert isinstance(result, Delivery) and result.status == "delivered"
    assert state.deliveries == {} and state.status() == "idle"
    assert state.find("dlv-1") is result


ALL = [s.value for s in Status]
PAIRS = [(a, b) for a in ALL for b in ALL]
PATH_TO = {
    "assigned": [],
    "accepted": ["accepted"],
    "declined": ["declined"],
    "picked_up": ["picked_up"],
    "en_route": ["picked_up", "en_route"],
    "arrived": ["picked_up", "arrived"],
    "delivered": ["picked_up", "delivered"],
    "failed": ["failed"],
    "cancelled": ["cancelled"],
}


@pytest.mark.parametrize(("current", "kind"), PAIRS)
def test_every_transition_is_either_applied_or_rejected_with_its_reason(current: str, kind: str) -> None:
    state, _ = walk(*PATH_TO[current])
    before = state.pack()
    result = apply_event(state, event(kind))
    if current in TERMINAL:
        expected = Reason.ALREADY_ASSIGNED if kind == "assigned" else Reason.ALREADY_FINISHED
        assert isinstance(result, Rejection) and result.reason == expected
    elif kind == "assigned":
        assert isinstance(result, Rejection) and result.reason == Reason.ALREADY_ASSIGNED
    elif Status(kind) in ALLOWED[Status(current)]:
        assert isinstance(result, Delivery) and result.status == kind
        return
    else:
        assert isinstance(result, Rejection) and result.reason == Reason.IMPOSSIBLE_TRANSITION
        assert f"{current} -> {kind}" in result.detail
    assert state.pack() == before, "a rejected event must change nothing"


def test_accepting_then_picking_up_keeps_when_it_was_accepted() -> None:
    _, result = walk("accepted", "picked_up")
    assert isinstance(result, Delivery) and result.status == "picked_up"
    assert result.accepted_at == T0 and result.picked_up_at == T0


def test_a_declined_delivery_leaves_the_driver() -> None:
    state, result = walk("declined")
    assert isinstance(result, Delivery) and result.status == "declined"
    assert state.deliveries == {} and state.status() == "idle"
    late = apply_event(state, event("accepted"))
    assert isinstance(late, Rejection) and late.reason == Reason.ALREADY_FINISHED


def test_a_failure_keeps_its_reason_and_a_reason_elsewhere_is_refused() -> None:
    state, _ = walk("picked_up", "arrived")
    failed = apply_event(state, event("failed", failure_reason="not_home"))
    assert isinstance(failed, Delivery) and failed.failure_reason == "not_home"
    state, _ = walk("picked_up")
    before = state.pack()
    for bad in (event("arrived", failure_reason="not_home"), event("failed", failure_reason="asleep")):
        rejected = apply_event(state, bad)
        assert isinstance(rejected, Rejection) and rejected.reason == Reason.BAD_FAILURE_REASON
    assert state.pack() == before
    _, unexplained = walk("failed")
    assert isinstance(unexplained, Delivery) and unexplained.failure_reason == "other"


def test_addresses_and_only_the_first_name_are_shown() -> None:
    state = DriverState()
    assigned = event(
        "assigned", pickup_address="Rua A, 10", dropoff_address="Av. B, 200", customer_name="Ana Maria Souza"
    )
    delivery = apply_event(state, assigned)
    assert isinstance(delivery, Delivery)
    shown = delivery.public()
    assert shown["pickup_address"] == "Rua A, 10" and shown["dropoff_address"] == "Av. B, 200"
    assert shown["customer_first_name"] == "Ana" and "Souza" not in json.dumps(shown)
    assert DriverState.unpack(state.pack()).deliveries["dlv-1"].customer_name == "Ana Maria Souza"


def test_a_state_packed_before_addresses_existed_still_loads() -> None:
    state, _ = walk("accepted")
    data = json.loads(state.pack())
    for name in ("pickup_address", "dropoff_address", "customer_name", "accepted_at", "failure_reason"):
        del data["deliveries"]["dlv-1"][name]
    old = DriverState.unpack(json.dumps(data).encode()).deliveries["dlv-1"]
    assert old.status == "accepted" and old.pickup_address is None and old.accepted_at is None


@pytest.mark.parametrize("kind", [k for k in ALL if k != "assigned"])
def test_event_for_a_delivery_never_assigned_is_unknown(kind: str) -> None:
    result = apply_event(DriverState(), event(kind, "nope"))
    assert isinstance(result, Rejection) and result.reason == Reason.UNKNOWN_DELIVERY


def test_duplicate_event_id_is_rejected_even_when_the_step_would_be_valid() -> None:
    state, _ = walk()
    first = event("picked_up")
    assert isinstance(apply_event(state, first), Delivery)
    again = apply_event(state, {**first, "type": "en_route"})
    assert isinstance(again, Rejection) and again.reason == Reason.DUPLICATE_EVENT


def test_assignment_without_locations_and_unknown_type_are_rejected() -> None:
    missing = apply_event(DriverState(), event("assigned", dropoff_lat=None))
    assert isinstance(missing, Rejection) and missing.reason == Reason.MISSING_LOCATION
    unknown = apply_event(DriverState(), event("unknown"))
    assert isinstance(unknown, Rejection) and unknown.reason == Reason.UNKNOWN_TYPE


def test_active_deliveries_are_capped() -> None:
    state = DriverState()
    for i in range(MAX_ACTIVE):
        assert isinstance(apply_event(state, event("assigned", f"d{i}")), Delivery)
    over = apply_event(state, event("assigned", "one-more"))
    assert isinstance(over, Rejection) and over.reason == Reason.TOO_MANY_ACTIVE


def test_in_transit_is_the_carried_delivery_with_the_earliest_promise() -> None:
    state = DriverState()
    apply_event(state, event("assigned", "late", promised_at=T0 + 9_000_000))
    apply_event(state, event("assigned", "soon", promised_at=T0 + 1_000_000))
    apply_event(state, event("assigned", "waiting", promised_at=T0))
    apply_event(state, event("picked_up", "late"))
    apply_event(state, event("picked_up", "soon"))
    carried = state.in_transit()
    assert carried is not None and carried.delivery_id == "soon"


def test_promise_can_be_moved_by_a_later_event() -> None:
    state, _ = walk()
    result = apply_event(state, event("picked_up", promised_at=T0 + 42))
    assert isinstance(result, Delivery) and result.promised_at == T0 + 42


def test_public_view_matches_the_dispatcher_contract() -> None:
    _, delivery = walk("picked_up")
    assert isinstance(delivery, Delivery)
    assert delivery.public() == {
        "delivery_id": "dlv-1",
        "status": "picked_up",
        "pickup": {"lat": -23.55, "lon": -46.63},
        "dropoff": {"lat": -23.58, "lon": -46.66},
        "promised_at": T0 + 1_800_000,
        "eta": None,
        "customer_ref": "cust-9",
        "pickup_address": None,
        "dropoff_address": None,
        "customer_first_name": None,
        "assigned_at": T0,
        "accepted_at": None,
        "failure_reason": None,
    }


def test_unpack_of_nothing_is_a_new_driver() -> None:
    assert DriverState.unpack(None) == DriverState()
    assert DriverState.unpack(b"") == DriverState()


def test_states_packed_by_json_dumps_still_unpack_non_finite_floats_included() -> None:
    state = DriverState(last_fix=LastFix(T0, -23.5, -46.6, 617700169958293503, None, 4.0))
    legacy = json.loads(state.pack())
    assert DriverState.unpack(json.dumps(legacy, separators=(",", ":")).encode()) == state
    legacy["last_fix"]["speed_mps"] = float("nan")  # json.dumps writes NaN, which JSON proper has not
    unpacked = DriverState.unpack(json.dumps(legacy).encode())
    assert unpacked.last_fix is not None and math.isnan(unpacked.last_fix.speed_mps or 0.0)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from([*ALL, "unknown"]), st.sampled_from(["a", "b", "c"]), st.booleans()),
        max_size=60,
    )
)
def test_any_event_sequence_keeps_the_state_consistent_and_packable(
    steps: list[tuple[str, str, bool]],
) -> None:
    state = DriverState()
    seen: list[dict[str, Any]] = []
    for kind, delivery_id, replay in steps:
        sent = seen[-1] if replay and seen else event(kind, delivery_id)
        seen.append(sent)
        before = state.pack()
        result = apply_event(state, sent)
        if isinstance(result, Rejection):
            assert state.pack() == before
        assert DriverState.unpack(state.pack()) == state
        assert all(d.status not in TERMINAL for d in state.deliveries.values())
        assert all(d.status in TERMINAL for d in state.finished)
        assert len(state.finished) <= MAX_FINISHED and len(state.event_hashes) <= MAX_EVENT_HASHES


def test_a_partner_key_moves_only_the_deliveries_it_assigned() -> None:
    partners = frozenset({"key:partner-a", "key:partner-b"})
    state = DriverState()
    mine = apply_event(state, event("assigned", "dlv-a", principal="key:partner-a"), partners)
    assert isinstance(mine, Delivery) and mine.owner == "key:partner-a"
    apply_event(state, event("assigned", "dlv-o", principal="key:order-system"), partners)
    for delivery_id in ("dlv-a", "dlv-o"):
        foreign = apply_event(state, event("cancelled", delivery_id, principal="key:partner-b"), partners)
        assert isinstance(foreign, Rejection) and foreign.reason == Reason.NOT_OWNER
    assert state.deliveries["dlv-a"].status == state.deliveries["dlv-o"].status == Status.ASSIGNED
    own = apply_event(state, event("picked_up", "dlv-a", principal="key:partner-a"), partners)
    assert isinstance(own, Delivery) and own.status == Status.PICKED_UP
    # Keys that are not partners (the order system, drivers' quick replies) move any delivery.
    other = apply_event(state, event("picked_up", "dlv-o", principal="key:order-system"), partners)
    assert isinstance(other, Delivery) and other.status == Status.PICKED_UP
    unscoped = apply_event(state, event("en_route", "dlv-a", principal="key:partner-b"))
    assert isinstance(unscoped, Delivery), "without a partner list, nothing is scoped"
