"""ETAs of carried deliveries on each fix: when they are published, late risk once, the arrival's error."""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from streams.deliveries import estimates
from streams.deliveries.eta import EtaConfig, ride_ratio
from streams.deliveries.state import DriverState, apply_event
from streams.deliveries.tracker import TrackerConfig, on_event

T0 = 1_790_000_010_000
MIN = 60_000
CONFIG = EtaConfig()
LEARNED = estimates.Learned(lambda cell, ts: 8.0)  # every cell rides at 8 m/s; no dwell learned yet


def carrying(promised_at: int, status: str = "picked_up") -> DriverState:
    state = DriverState()
    base = {"delivery_id": "d1", "driver_id": "drv", "ts": T0, "promised_at": promised_at}
    apply_event(
        state,
        {**base, "event_id": "e1", "type": "assigned", "pickup_lat": -23.6, "pickup_lon": -46.6}
        | {"dropoff_lat": -23.50, "dropoff_lon": -46.63},
    )
    if status != "assigned":
        apply_event(state, {**base, "event_id": "e2", "type": status})
    return state


def fix(ts: int, lat: float, step_m: float = 50.0) -> dict[str, Any]:
    return {"device_ts": ts, "lat": lat, "lon": -46.63, "step_m": step_m, "h3_r7": 0, "speed_mps": None}


def ride(state: DriverState, fixes: list[dict[str, Any]], delay: int = 100) -> tuple[list[Any], list[Any]]:
    updates, alerts = [], []
    for f in fixes:
        u, a, _ = estimates.on_fix(state, "drv", f, LEARNED, f["device_ts"] + delay, CONFIG, 120_000)
        updates += u
        alerts += a
    return updates, alerts


def northbound(start: int, n: int, lat: float = -23.60) -> list[dict[str, Any]]:
    return [fix(start + i * 5_000, lat + i * 50 / 111_195) for i in range(n)]


def test_first_estimate_is_published_then_only_on_change_or_age() -> None:
    state = carrying(T0 + 120 * MIN)
    updates, alerts = ride(state, northbound(T0, 120))
    assert alerts == []
    assert updates[0]["computed_at"] == T0 and updates[0]["promised_at"] == T0 + 120 * MIN
    assert 2 <= len(updates) < 30
    gaps = [b["computed_at"] - a["computed_at"] for a, b in itertools.pairwise(updates)]
    assert all(g <= CONFIG.max_interval_s * 1000 for g in gaps)
    delivery = state.deliveries["d1"]
    assert delivery.eta == updates[-1]["eta"] and delivery.eta_first == updates[0]["eta"]


def test_no_estimate_before_pickup_nor_for_a_late_fix() -> None:
    assert ride(carrying(T0 + 60 * MIN, "assigned"), northbound(T0, 5)) == ([], [])
    state = carrying(T0 + 60 * MIN)
    ride(state, northbound(T0 + MIN, 3))
    assert ride(state, [fix(T0, -23.59)]) == ([], [])


def test_an_upload_long_after_the_fixes_publishes_no_eta_and_raises_no_late_risk() -> None:
    state = carrying(T0 + MIN)
    assert ride(state, northbound(T0, 40), delay=60 * MIN) == ([], [])
    assert state.recent[1] > 0, "the old fixes still teach the driver's recent speed"


def test_late_risk_is_raised_once_per_delivery() -> None:
    state = carrying(T0 + MIN)  # 11 km in one minute: hopeless
    _, alerts = ride(state, northbound(T0, 40))
    [late] = alerts
    assert late["kind"] == "late_risk" and late["delivery_id"] == "d1" and late["started_at"] == T0
    assert state.deliveries["d1"].late_alerted
    assert state.alerts["late_risk:d1"].alert_id == late["alert_id"]  # listed as open by the API
    done = {"event_id": "e9", "delivery_id": "d1", "driver_id": "drv", "type": "delivered", "ts": T0}
    on_event(state, "drv", done, T0, TrackerConfig())
    assert "late_risk:d1" not in state.alerts


def test_arrival_records_the_actual_time_and_the_errors_of_the_first_and_last_eta() -> None:
    state = carrying(T0 + 120 * MIN)
    updates, _ = ride(state, northbound(T0, 60))
    apply_event(
        state,
        {"event_id": "e9", "delivery_id": "d1", "driver_id": "drv", "type": "delivered", "ts": T0 + 30 * MIN},
    )
    delivery = state.finished[-1]
    record, errors = estimates.on_arrival("drv", delivery)
    assert record is not None and record["method"] == "actual" and record["eta"] == T0 + 30 * MIN
    assert errors == {
        "first": (T0 + 30 * MIN - updates[0]["eta"]) / 1000,
        "last": (T0 + 30 * MIN - updates[-1]["eta"]) / 1000,
    }
    assert estimates.on_arrival("drv", carrying(T0).deliveries["d1"]) == (None, {})


def test_a_stop_in_transit_adds_the_learned_dwell_and_teaches_it_when_it_ends() -> None:
    state = carrying(T0 + 120 * MIN)
    learned = estimates.Learned(lambda cell, ts: 8.0, {60: 400.0, 120: 340.0}.get)
    moving, _, _ = estimates.on_fix(state, "drv", fix(T0, -23.60), learned, T0 + 100, CONFIG, 120_000)
    parked = [fix(T0 + i * 10_000, -23.60 + (i % 2) * 1e-5) for i in range(1, 12)]  # standing, 110 s
    updates, samples = [], []
    for f in parked:
        u, _, s = estimates.on_fix(state, "drv", f, learned, f["device_ts"] + 100, CONFIG, 120_000)
        updates += u
        samples += s
    assert samples == [], "the stop has not ended"
    waiting = [u for u in updates if u["method"] == "dwell"]
    assert waiting, "a minute into the stop, the ETA counts the dwell"
    # Still at the same place: the ETA is the ride plus what is left of a stop that lasts 460 s.
    assert waiting[0]["eta"] - moving[0]["eta"] == pytest.approx(460_000, abs=15_000)
    off = fix(T0 + 140_000, -23.60 + 300 / 111_195)
    off["speed_mps"] = 7.0
    _, _, samples = estimates.on_fix(state, "drv", off, learned, off["device_ts"] + 100, CONFIG, 120_000)
    assert samples == [(60, 80.0), (120, 20.0)]


def _crawl(config: EtaConfig) -> tuple[list[Any], list[Any]]:
    """Ride, crawl through a jam at 1.5 m/s for 150 s (225 m), ride on; return the updates and samples."""
    state = carrying(T0 + 120 * MIN)
    learned = estimates.Learned(lambda cell, ts: 8.0, {60: 400.0, 120: 340.0}.get)
    fixes = [fix(T0, -23.60) | {"speed_mps": 8.0}]
    fixes += [fix(T0 + i * 5_000, -23.60 + 7.5 * i / 111_195, 7.5) | {"speed_mps": 1.5} for i in range(1, 31)]
    fixes += [fix(T0 + 155_000, -23.60 + 265 / 111_195, 40.0) | {"speed_mps": 8.0}]
    updates, samples = [], []
    for f in fixes:
        u, _, s = estimates.on_fix(state, "drv", f, learned, f["device_ts"] + 100, config, 120_000)
        updates += u
        samples += s
    return updates, samples


def test_a_jam_holds_the_driver_up_like_a_stop_and_teaches_how_long_it_lasted() -> None:
    updates, samples = _crawl(CONFIG)
    jammed = [u for u in updates if u["method"] == "dwell"]
    assert jammed, "a minute into the crawl, the ETA counts the dwell the fleet taught"
    assert jammed[0]["eta"] - updates[0]["eta"] == pytest.approx(400_000 + 60_000, abs=20_000)
    assert samples == [(60, 95.0), (120, 35.0)]
    # Crawling is judged against the cell: with no crawl share, the same jam is plain slow riding.
    updates, samples = _crawl(EtaConfig(crawl_fraction=0.0))
    assert samples == [] and all(u["method"] != "dwell" for u in updates)


def test_each_published_riding_time_is_kept_and_the_arrival_teaches_the_ratio() -> None:
    state = carrying(T0 + 120 * MIN)
    learned = estimates.Learned(lambda cell, ts: 8.0, {60: 100.0}.get)
    ride(state, northbound(T0, 12))  # riding: the first ETA and perhaps more
    delivery = state.deliveries["d1"]
    assert delivery.rides and delivery.rides[0][0] == T0 and delivery.held_ms == 0
    first_riding_ms = delivery.rides[0][1]
    # A 3-minute wait on the way, then on: the wait is held, not riding.
    at = T0 + 60_000
    for i in range(37):
        f = fix(at + i * 5_000, -23.60 + 11 * 50 / 111_195, 0.0) | {"speed_mps": 0.0}
        estimates.on_fix(state, "drv", f, learned, f["device_ts"] + 100, CONFIG, 120_000)
    moving = fix(at + 190_000, -23.60 + 12 * 50 / 111_195) | {"speed_mps": 8.0}
    estimates.on_fix(state, "drv", moving, learned, moving["device_ts"] + 100, CONFIG, 120_000)
    assert delivery.held_ms == 195_000, "from the last riding fix, 55 s in, to the first moving one"
    during = [r for r in delivery.rides if T0 + 55_000 < r[0] < T0 + 250_000]
    assert during, "an ETA was published during the wait"
    # Published a minute or more into the wait: that much of it lies before the ETA, not in the riding after.
    assert all(held_then == at - (T0 + 55_000) for at, _, held_then, _ in during)
    # Arrival when the first ETA's riding time has been ridden, plus the wait and 5 s.
    arrived = T0 + 55_000 + 195_000 + first_riding_ms
    apply_event(state, {"event_id": "e9", "delivery_id": "d1", "type": "arrived", "ts": arrived})
    assert estimates.first_arrival(delivery)
    samples = estimates.ride_samples(state, delivery, CONFIG)
    assert samples and samples[0][0] is None, "the whole fleet's ratio first"
    ratio = samples[0][1]
    assert abs(ratio - 1.0) < 0.05
    # Each ETA teaches the class of the drop-off's direction it was made in too: due north of the rider,
    # class 0.
    assert all(r[3] == 0 for r in delivery.rides)
    assert len(samples) == 1 + len(delivery.rides) and {cls for cls, _ in samples[1:]} == {0}
    assert all(abs(r - 1.0) < 0.1 for _, r in samples[1:])
    counting_the_wait = ride_ratio(delivery.rides, arrived, 0, CONFIG)
    assert counting_the_wait is not None and counting_the_wait > ratio + 0.05


def test_a_wait_at_the_door_before_arrived_is_tapped_is_not_riding() -> None:
    state = carrying(T0 + 120 * MIN)
    delivery = state.deliveries["d1"]
    delivery.rides = [[T0, 300_000, 0, 3]]
    state.stop = [-23.5, -46.63, T0 + 300_000, T0 + 300_000]  # at the door since 300 s, in transit
    state.recent = [8.0, 120.0, T0 + 595_000]  # and seen there until 5 s before "arrived"
    apply_event(state, {"event_id": "e9", "delivery_id": "d1", "type": "arrived", "ts": T0 + 600_000})
    assert estimates.ride_samples(state, delivery, CONFIG) == [
        (None, pytest.approx(305 / 300)),
        (3, pytest.approx(305 / 300)),
    ]
    state.stop = None  # the same arrival without the wait seen: twice the foreseen riding, out of bounds
    assert estimates.ride_samples(state, delivery, CONFIG) == []
