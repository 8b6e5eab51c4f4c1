"""The console's fleet rows: statuses, filters, pages and cursors, and every malformed parameter."""

from __future__ import annotations

import h3
import pytest

from streams.console.fleet import (
    MAX_LIMIT,
    DeliveryQuery,
    DriverQuery,
    Fleet,
    QueryError,
    console_status,
    encode_cursor,
    row_of,
)
from streams.deliveries.stall import OpenAlert
from streams.deliveries.state import Delivery, DriverState, LastFix

T0 = 1_700_000_000_000
PAULISTA = (-23.5614, -46.6559)
SANTANA = (-23.5020, -46.6250)


def fix(lat: float, lon: float, ts: int = T0) -> LastFix:
    return LastFix(ts, lat, lon, h3.str_to_int(h3.latlng_to_cell(lat, lon, 9)), 5.0, 6.0)


def delivery(
    delivery_id: str, status: str = "assigned", promised_at: int | None = None, eta: int | None = None
) -> Delivery:
    return Delivery(delivery_id, status, PAULISTA, SANTANA, promised_at, None, T0, T0, eta=eta)


def state(
    *,
    at: tuple[float, float] | None = PAULISTA,
    still: bool = False,
    alerts: tuple[str, ...] = (),
    deliveries: tuple[Delivery, ...] = (),
) -> DriverState:
    s = DriverState(last_fix=fix(*at) if at else None, last_update=T0)
    s.movement.still_since = T0 - 60_000 if still else None
    for kind in alerts:
        s.alerts[kind] = OpenAlert(f"{kind}-x", kind, T0 - 1_000, at[0] if at else 0.0, 0.0, None)
    for d in deliveries:
        s.deliveries[d.delivery_id] = d
    return s


def test_the_most_urgent_condition_names_the_status() -> None:
    assert console_status(state(alerts=("offline", "stall"))) == "offline"
    assert console_status(state(alerts=("stall", "late_risk"))) == "stalled"
    assert console_status(state(still=True)) == "idle"
    assert console_status(state(at=None)) == "idle"
    assert console_status(state()) == "moving"
    assert console_status(state(alerts=("late_risk",))) == "moving"


def test_a_row_holds_the_cell_the_delivery_in_hand_and_the_open_alerts() -> None:
    waiting = delivery("d-2", promised_at=T0 + 60_000)
    carried = delivery("d-1", status="picked_up", promised_at=T0 + 120_000)
    row = row_of("drv-1", state(alerts=("stall",), deliveries=(waiting, carried)))
    assert row.cell == h3.cell_to_parent(h3.latlng_to_cell(*PAULISTA, 9), 7)
    assert row.delivery is not None and row.delivery["delivery_id"] == "d-1"  # the one in hand first
    assert [d["delivery_id"] for d in row.deliveries] == ["d-2", "d-1"]  # soonest promise first
    assert [a["kind"] for a in row.open_alerts] == ["stall"]
    assert row.public()["last_fix"]["lat"] == PAULISTA[0]


def fleet_of(n: int) -> Fleet:
    fleet = Fleet()
    kinds = [("offline",), ("stall",), (), ()]
    for i in range(n):
        fleet.apply(
            f"drv-{i:05d}", state(alerts=kinds[i % 4], still=i % 4 == 3, at=PAULISTA if i % 2 else SANTANA)
        )
    return fleet


def walk(fleet: Fleet, **params: str) -> list[str]:
    seen, cursor = [], None
    while True:
        rows, cursor = fleet.page(DriverQuery.parse({**params, **({"cursor": cursor} if cursor else {})}))
        seen += [r.driver_id for r in rows]
        if cursor is None:
            return seen


def test_pages_walk_every_driver_once_most_urgent_first() -> None:
    fleet = fleet_of(2_000)
    seen = walk(fleet, limit="137")
    assert len(seen) == len(set(seen)) == 2_000
    statuses = [fleet.rows[d].status for d in seen]
    assert statuses == sorted(statuses, key=["offline", "stalled", "moving", "idle"].index)
    assert fleet.counts() == {"offline": 500, "stalled": 500, "moving": 500, "idle": 500}


def test_filters_combine() -> None:
    fleet = fleet_of(400)
    cell = h3.cell_to_parent(h3.latlng_to_cell(*PAULISTA, 9), 7)
    stalled_here = walk(fleet, status="stalled,offline", cell=cell, limit="500")
    assert stalled_here and all(
        fleet.rows[d].status in ("stalled", "offline") and fleet.rows[d].cell == cell for d in stalled_here
    )
    assert len(stalled_here) == 100  # odd drivers are at Paulista; half of those offline or stalled
    assert sorted(walk(fleet, q="drv-0001")) == [f"drv-{i:05d}" for i in range(10, 20)]


def test_a_driver_changing_status_mid_walk_is_not_shown_twice() -> None:
    fleet = fleet_of(40)
    first, cursor = fleet.page(DriverQuery.parse({"limit": "10"}))
    moved = first[0].driver_id  # an offline driver comes back and moves: its row sorts after the cursor
    fleet.apply(moved, state())
    rest = walk(fleet, limit="10", cursor=cursor) if cursor else []
    assert rest.count(moved) <= 1


def test_a_deleted_state_leaves_the_fleet() -> None:
    fleet = fleet_of(3)
    fleet.apply("drv-00001", None)
    assert "drv-00001" not in fleet.rows


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"status": "stalled,asleep"}, "status"),
        ({"cell": "not-a-cell"}, "cell"),
        ({"cell": h3.latlng_to_cell(*PAULISTA, 9)}, "cell"),  # a valid cell of the wrong resolution
        ({"limit": str(MAX_LIMIT + 1)}, "limit"),
        ({"limit": "0"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "bm90IGpzb24"}, "cursor"),  # base64 of "not json"
        ({"cursor": encode_cursor((9, "drv-1"))}, "cursor"),  # a rank no status has
        ({"sort": "name"}, "sort"),
    ],
)
def test_every_bad_driver_parameter_is_named(params: dict[str, str], param: str) -> None:
    with pytest.raises(QueryError) as refused:
        DriverQuery.parse(params)
    assert refused.value.param == param


def test_deliveries_filter_by_lateness_status_and_driver() -> None:
    fleet = Fleet()
    on_time = delivery("d-on-time", "picked_up", promised_at=T0 + 600_000, eta=T0 + 300_000)
    late_eta = delivery("d-late-eta", "picked_up", promised_at=T0 + 600_000, eta=T0 + 900_000)
    overdue = delivery("d-overdue", "assigned", promised_at=T0 - 1)
    unpromised = delivery("d-unpromised", "assigned")
    fleet.apply("drv-a", state(deliveries=(on_time, late_eta)))
    fleet.apply("drv-b", state(deliveries=(overdue, unpromised)))

    def ids(**params: str) -> list[str]:
        rows, _ = fleet.deliveries(DeliveryQuery.parse(params), now_ms=T0)
        return [r["delivery_id"] for r in rows]

    assert ids() == ["d-overdue", "d-late-eta", "d-on-time", "d-unpromised"]  # soonest promise, then id
    assert ids(late="true") == ["d-overdue", "d-late-eta"]
    assert ids(late="false", status="assigned") == ["d-unpromised"]
    assert ids(driver="drv-a", late="false") == ["d-on-time"]
    page, cursor = fleet.deliveries(DeliveryQuery.parse({"limit": "3"}), now_ms=T0)
    assert cursor is not None
    rest, end = fleet.deliveries(DeliveryQuery.parse({"cursor": cursor}), now_ms=T0)
    assert [r["delivery_id"] for r in page + rest] == ids() and end is None
    assert page[0]["driver_id"] == "drv-b" and page[0]["late"] is True


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"late": "yes"}, "late"),
        ({"status": "delivered"}, "status"),
        ({"limit": "501"}, "limit"),
        ({"x": "1"}, "x"),
    ],
)
def test_every_bad_delivery_parameter_is_named(params: dict[str, str], param: str) -> None:
    with pytest.raises(QueryError) as refused:
        DeliveryQuery.parse(params)
    assert refused.value.param == param
