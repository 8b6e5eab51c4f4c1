"""The rider's own pace against the learned speeds of the cells they ride through, and the ETA it makes."""

from __future__ import annotations

import pytest

from streams.deliveries import estimates
from streams.deliveries.eta import (
    EtaConfig,
    RecentSpeed,
    estimate_along,
    pace_factor,
    update_pace,
)
from streams.deliveries.state import DriverState, apply_event

CONFIG = EtaConfig()
LAT, LON = -23.5614, -46.6559
DROP_LAT, DROP_LON = -23.5430, -46.6450
T0 = 1_790_000_000_000


def test_the_pace_is_the_riders_speed_over_each_cells_own_speed() -> None:
    # A rider 10% faster than the fleet, crossing a slow cell (4 m/s) and a fast one (12 m/s) in turn.
    pace = RecentSpeed(1.0, 0.0, T0)
    for i in range(1, 121):
        cell_mps = 4.0 if (i // 20) % 2 else 12.0
        pace = update_pace(pace, 1.1 * cell_mps * 5.0, cell_mps, T0 + i * 5_000, CONFIG)
    assert pace.speed_mps == pytest.approx(1.1)
    assert pace.evidence_s == pytest.approx(CONFIG.recent_tau_s, rel=0.05)


def test_parked_steps_unknown_cells_and_old_fixes_leave_the_pace_alone() -> None:
    pace = RecentSpeed(0.9, 60.0, T0)
    parked = update_pace(pace, 2.0, 8.0, T0 + 5_000, CONFIG)
    assert (parked.speed_mps, parked.evidence_s, parked.last_ts) == (0.9, 60.0, T0 + 5_000)
    assert update_pace(pace, 50.0, None, T0 + 5_000, CONFIG) == pace
    assert update_pace(pace, 50.0, 8.0, T0 - 5_000, CONFIG) == pace


def test_the_pace_factor_trusts_evidence_and_stays_within_its_bounds() -> None:
    assert pace_factor(None, CONFIG) == 1.0
    assert pace_factor(RecentSpeed(1.2, 0.0, T0), CONFIG) == 1.0
    thin = pace_factor(RecentSpeed(1.2, 10.0, T0), CONFIG)
    thick = pace_factor(RecentSpeed(1.2, 180.0, T0), CONFIG)
    assert 1.0 < thin < thick < 1.2
    assert pace_factor(RecentSpeed(0.2, 180.0, T0), CONFIG) == CONFIG.pace_bounds[0]  # a jam, not the rider
    assert pace_factor(RecentSpeed(3.0, 180.0, T0), CONFIG) == CONFIG.pace_bounds[1]


def test_the_riding_time_is_divided_by_the_pace_and_the_dwell_is_not() -> None:
    usual = estimate_along(LAT, LON, DROP_LAT, DROP_LON, T0, 400.0, CONFIG, dwell_s=100.0)
    quick = estimate_along(LAT, LON, DROP_LAT, DROP_LON, T0, 400.0, CONFIG, dwell_s=100.0, pace=1.25)
    riding_ms = usual.eta_ms - T0 - 100_000
    assert quick.eta_ms - T0 - 100_000 == pytest.approx(riding_ms / 1.25, abs=1)


def test_pace_bounds_must_hold_one() -> None:
    with pytest.raises(ValueError):
        EtaConfig(pace_bounds=(1.1, 1.3))


def _carrying() -> DriverState:
    state = DriverState()
    base = {"delivery_id": "d1", "driver_id": "drv", "ts": T0, "promised_at": T0 + 3_600_000}
    apply_event(
        state,
        {**base, "event_id": "e1", "type": "assigned", "pickup_lat": LAT, "pickup_lon": LON}
        | {"dropoff_lat": DROP_LAT, "dropoff_lon": DROP_LON},
    )
    apply_event(state, {**base, "event_id": "e2", "type": "picked_up"})
    return state


def _fix(ts: int, step_m: float, speed_mps: float) -> dict[str, object]:
    return {"device_ts": ts, "lat": LAT, "lon": LON, "step_m": step_m, "h3_r7": 1, "speed_mps": speed_mps}


def test_a_phone_standing_still_does_not_slow_the_rider_down() -> None:
    learned = estimates.Learned(lambda cell, ts: 8.0)
    state = _carrying()
    for i in range(40):  # riding at the fleet's speed
        estimates.on_fix(
            state, "drv", _fix(T0 + i * 5_000, 40.0, 8.0), learned, T0 + i * 5_000, CONFIG, 120_000
        )
    riding = (list(state.recent), list(state.pace))
    for i in range(40, 60):  # then at a door: the fix wanders 10 m a step while the phone says 0 m/s
        estimates.on_fix(
            state, "drv", _fix(T0 + i * 5_000, 10.0, 0.0), learned, T0 + i * 5_000, CONFIG, 120_000
        )
    assert state.recent[:2] == riding[0][:2] and state.pace == riding[1]
    assert state.pace[0] == pytest.approx(1.0)


def test_the_pace_survives_the_table_and_an_older_state_starts_at_the_fleets() -> None:
    state = DriverState()
    state.pace = [1.1, 90.0]
    assert DriverState.unpack(state.pack()).pace == [1.1, 90.0]
    older = state.pack().replace(b',"pace":[1.1,90.0]', b"")
    assert b"pace" not in older and DriverState.unpack(older).pace == [1.0, 0.0]
