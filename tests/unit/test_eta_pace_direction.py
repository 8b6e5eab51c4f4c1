"""The rider's pace and the drop-off's direction in the ETA, and the riding time kept for the calibration."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.deliveries import estimates
from streams.deliveries.eta import (
    EtaConfig,
    Pace,
    bearing_deg,
    direction_class,
    pace_factor,
    ride_ratios,
    update_pace,
)
from streams.deliveries.state import DriverState, apply_event

CONFIG = EtaConfig()
T0 = 1_790_000_010_000
LAT, LON = -23.60, -46.63
M_PER_DEG = 111_195.0


def test_bearings_are_clockwise_from_north() -> None:
    assert bearing_deg(LAT, LON, LAT + 0.01, LON) == pytest.approx(0.0, abs=0.01)
    assert bearing_deg(LAT, LON, LAT, LON + 0.01) == pytest.approx(90.0, abs=0.01)
    assert bearing_deg(LAT, LON, LAT - 0.01, LON) == pytest.approx(180.0, abs=0.01)
    assert bearing_deg(LAT, LON, LAT, LON - 0.01) == pytest.approx(270.0, abs=0.01)


@pytest.mark.parametrize(
    ("to", "expected"),
    [
        (0.0, 0),
        (14.0, 0),
        (16.0, 1),
        (44.0, 2),
        (90.0, 6),
        (179.0, 11),
        (181.0, 12),
        (302.0, 20),
        (359.0, 23),
    ],
)
def test_the_direction_class_is_the_bearing_to_the_drop_off(to: float, expected: int) -> None:
    drop = (
        LAT + 0.02 * math.cos(math.radians(to)),
        LON + 0.02 * math.sin(math.radians(to)) / math.cos(math.radians(LAT)),
    )
    assert direction_class(LAT, LON, *drop, CONFIG) == expected


@given(st.floats(0, 360, exclude_max=True))
def test_direction_classes_cover_the_whole_turn(to: float) -> None:
    drop = (LAT + 0.02 * math.cos(math.radians(to)), LON + 0.02 * math.sin(math.radians(to)))
    assert 0 <= direction_class(LAT, LON, *drop, CONFIG) < 360 / CONFIG.direction_class_deg


def test_a_direction_class_as_wide_as_the_turn_is_one_class() -> None:
    whole = EtaConfig(direction_class_deg=360.0)
    assert {
        direction_class(LAT, LON, LAT + dy, LON + dx, whole) for dy in (-0.01, 0.01) for dx in (-0.01, 0.01)
    } == {0}
    with pytest.raises(ValueError, match="direction_class_deg"):
        EtaConfig(direction_class_deg=0.0)


def test_the_pace_compares_each_step_with_its_own_cell() -> None:
    pace = Pace()
    # Ten seconds at 9 m/s where the cell rides at 10, then ten at 4.5 where it rides at 5: 0.9 both times.
    pace = update_pace(pace, 9.0, 10.0, 10.0, CONFIG)
    pace = update_pace(pace, 4.5, 5.0, 10.0, CONFIG)
    assert pace.ratio == pytest.approx(0.9) and 19.0 < pace.evidence_s <= 20.0
    assert update_pace(pace, 6.0, None, 5.0, CONFIG) == pace, "an unknown cell says nothing"
    assert update_pace(pace, 6.0, 8.0, 0.0, CONFIG) == pace, "nor does a step without time"


def test_the_pace_is_shrunk_toward_the_fleet_while_thin_and_bounded() -> None:
    assert pace_factor(Pace(), CONFIG) == 1.0
    half = pace_factor(Pace(0.9, CONFIG.pace_half_weight_s), CONFIG)
    assert half == pytest.approx(0.95)
    assert pace_factor(Pace(0.9, 100 * CONFIG.pace_half_weight_s), CONFIG) == pytest.approx(0.9, abs=0.002)
    low, high = CONFIG.pace_bounds
    assert pace_factor(Pace(0.3, 10_000.0), CONFIG) == low
    assert pace_factor(Pace(3.0, 10_000.0), CONFIG) == high


def test_old_pace_fades_over_the_time_constant() -> None:
    slow = Pace(0.8, CONFIG.pace_tau_s)
    after = update_pace(slow, 12.0, 10.0, CONFIG.pace_tau_s, CONFIG)
    kept = math.exp(-1.0)
    assert after.ratio == pytest.approx((0.8 * kept + 1.2) / (kept + 1.0))


def test_ride_ratios_are_per_eta_by_direction_class() -> None:
    rides = [[T0, 600_000, 0, -1], [T0 + 100_000, 400_000, 0, 2], [T0 + 300_000, 300_000, 0, 0]]
    arrived = T0 + 660_000
    assert ride_ratios(rides, arrived, 0, CONFIG) == [(2, pytest.approx(560 / 400)), (0, pytest.approx(1.2))]
    # An older record without a class, or a ratio out of bounds, teaches no class.
    assert ride_ratios([[T0, 600_000, 0]], arrived, 0, CONFIG) == []
    assert ride_ratios([[T0, 100_000, 0, 1]], arrived, 0, CONFIG) == []


def _fix(ts: int, lat: float, speed: float) -> dict[str, Any]:
    step = speed * 5.0
    return {
        "device_ts": ts,
        "lat": lat,
        "lon": LON,
        "step_m": step,
        "derived_speed_mps": speed,
        "speed_mps": speed,
        "h3_r7": 0,
    }


def _carrying() -> DriverState:
    state = DriverState()
    base = {"delivery_id": "d1", "driver_id": "drv", "ts": T0, "promised_at": T0 + 3_600_000}
    apply_event(
        state,
        {**base, "event_id": "e1", "type": "assigned", "pickup_lat": LAT, "pickup_lon": LON}
        | {"dropoff_lat": LAT + 0.05, "dropoff_lon": LON},
    )
    apply_event(state, {**base, "event_id": "e2", "type": "picked_up"})
    return state


def _ride_north(state: DriverState, speed: float, learned: estimates.Learned, n: int) -> list[dict[str, Any]]:
    updates = []
    for i in range(n):
        ts = T0 + i * 5_000
        f = _fix(ts, LAT + i * speed * 5.0 / M_PER_DEG, speed)
        u, _, _ = estimates.on_fix(state, "drv", f, learned, ts + 100, CONFIG, 120_000)
        updates += u
    return updates


def test_a_rider_faster_than_the_fleet_gets_an_earlier_eta() -> None:
    learned = estimates.Learned(lambda cell, ts: 8.0)
    fleet, fast = _carrying(), _carrying()
    _ride_north(fleet, 8.0, learned, 40)
    _ride_north(fast, 10.0, learned, 40)
    assert fleet.pace[0] == pytest.approx(1.0) and fast.pace[0] == pytest.approx(1.25)
    # Same place, same cells: the faster rider's riding time is shorter by their pace, as far as trusted.
    last = T0 + 39 * 5_000
    for state in (fleet, fast):
        state.deliveries["d1"].eta = None
    f = _fix(last + 5_000, LAT + 0.01, 8.0)
    (slow_eta,), _, _ = estimates.on_fix(fleet, "drv", f, learned, f["device_ts"], CONFIG, 120_000)
    (fast_eta,), _, _ = estimates.on_fix(fast, "drv", dict(f), learned, f["device_ts"], CONFIG, 120_000)
    trust = pace_factor(Pace(*fast.pace), CONFIG)
    assert 1.15 < trust <= 1.25
    riding = slow_eta["eta"] - f["device_ts"]
    assert fast_eta["eta"] - f["device_ts"] == pytest.approx(riding / trust, rel=0.01)


def test_a_crawl_or_a_standing_phone_teaches_no_pace() -> None:
    learned = estimates.Learned(lambda cell, ts: 8.0)
    state = _carrying()
    _ride_north(state, 2.0, learned, 20)  # 2 m/s where the cell rides at 8: a jam, not the rider
    assert state.pace == [1.0, 0.0]
    f = _fix(T0 + 200_000, LAT + 0.002, 6.0) | {"speed_mps": 0.0}
    estimates.on_fix(state, "drv", f, learned, f["device_ts"], CONFIG, 120_000)
    assert state.pace == [1.0, 0.0]


def test_the_riding_kept_for_the_calibration_is_before_the_calibration() -> None:
    """The calibration compares riding with what the cells foresaw: if it compared with its own output, it
    would teach itself back toward 1 with every arrival."""
    runs = {}
    for ratio in (None, 0.8):
        learned = estimates.Learned(lambda cell, ts: 8.0, ride_ratio=lambda direction, r=ratio: r)
        state = _carrying()
        updates = _ride_north(state, 8.0, learned, 3)
        runs[ratio] = (updates[0]["eta"] - T0, state.deliveries["d1"].rides[0][1])
    (plain_eta, plain_riding), (calibrated_eta, calibrated_riding) = runs[None], runs[0.8]
    assert calibrated_eta == pytest.approx(0.8 * plain_eta, rel=1e-3)
    assert calibrated_riding == pytest.approx(plain_riding, abs=2)


def test_a_direction_class_speaks_before_the_fleet_when_it_has_been_taught() -> None:
    by_class = {0: 0.7}
    asked: list[int | None] = []

    def ratio(direction: int | None) -> float | None:
        asked.append(direction)
        return by_class.get(direction) if direction is not None else 1.1

    state = _carrying()
    updates = _ride_north(state, 8.0, estimates.Learned(lambda cell, ts: 8.0, ride_ratio=ratio), 30)
    rides = state.deliveries["d1"].rides
    assert {r[3] for r in rides} == {0}, "the drop-off lies due north of the rider: class 0"
    # Every ETA, the first included, uses class 0's 0.7 rather than the fleet's 1.1.
    for update, ride in zip(updates, rides, strict=False):
        assert (update["eta"] - update["computed_at"]) / ride[1] == pytest.approx(0.7, rel=0.01)
    # A class nobody has taught yet leaves the fleet's ratio to speak.
    by_class.clear()
    state = _carrying()
    (first, *_) = _ride_north(state, 8.0, estimates.Learned(lambda cell, ts: 8.0, ride_ratio=ratio), 1)
    riding = state.deliveries["d1"].rides[0][1]
    assert (first["eta"] - first["computed_at"]) / riding == pytest.approx(1.1, rel=0.01)
    assert 0 in asked and None in asked
