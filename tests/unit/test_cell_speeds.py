"""Learned cell speeds: hour of week, which samples count, the decayed mean, and lookups with fallbacks."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.deliveries.cell_speeds import (
    HOUR_MS,
    CellSpeed,
    SpeedConfig,
    cell_key,
    fold,
    hour_of_week,
    lookup,
    sample_of,
    summarize,
)

CONFIG = SpeedConfig()
CELL = 0x87A8100C6FFFFFF
# Monday 2026-11-23 08:30 in São Paulo is 11:30 UTC.
MONDAY_0830 = int(datetime(2026, 11, 23, 11, 30, tzinfo=UTC).timestamp() * 1000)


def _ping(speed: float | None, late: bool = False, ts: int = MONDAY_0830) -> dict[str, object]:
    return {"derived_speed_mps": speed, "late": late, "device_ts": ts, "h3_r7": CELL}


def test_hour_of_week_is_local_monday_based() -> None:
    assert hour_of_week(MONDAY_0830) == 8
    assert hour_of_week(MONDAY_0830 - 9 * HOUR_MS) == 167  # Sunday 23:30
    assert hour_of_week(MONDAY_0830 + 24 * HOUR_MS) == 32


@given(st.integers(0, 4_000_000_000_000))
def test_hour_of_week_is_in_range_and_weekly(ts: int) -> None:
    assert 0 <= hour_of_week(ts) < 168
    assert hour_of_week(ts) == hour_of_week(ts + 168 * HOUR_MS)


def test_only_moving_on_time_samples_count() -> None:
    assert sample_of(_ping(8.0), CONFIG) == (cell_key(CELL, 8), 8.0, MONDAY_0830)
    assert sample_of(_ping(0.3), CONFIG) is None  # parked: says nothing about traffic
    assert sample_of(_ping(None), CONFIG) is None
    assert sample_of(_ping(8.0, late=True), CONFIG) is None
    assert sample_of(_ping(45.0), CONFIG) is None
    assert sample_of(_ping(float("nan")), CONFIG) is None


def test_a_step_the_phone_calls_standing_still_or_a_crawl_in_a_jam_is_not_the_cells_speed() -> None:
    jitter = _ping(3.0) | {"speed_mps": 0.0}  # GPS jitter or a walk to the door while parked
    assert sample_of(jitter, CONFIG) is None
    assert sample_of(_ping(3.0) | {"speed_mps": 2.8}, CONFIG) == (cell_key(CELL, 8), 3.0, MONDAY_0830)
    # Crawling at 1.5 m/s where riders do 8: a hold-up the ETA counts apart; at 4 m/s, slow riding.
    assert sample_of(_ping(1.5), CONFIG, lambda cell, ts: 8.0) is None
    assert sample_of(_ping(4.0), CONFIG, lambda cell, ts: 8.0) == (cell_key(CELL, 8), 4.0, MONDAY_0830)
    assert sample_of(_ping(1.5), CONFIG) is not None, "a cell nothing has taught yet learns from any riding"


def test_summarize_gives_one_sum_per_key() -> None:
    sums = summarize([("a", 4.0, 10), ("b", 6.0, 5), ("a", 8.0, 30), ("a", 3.0, 20)])
    assert sums == {"a": (15.0, 3, 30), "b": (6.0, 1, 5)}


def test_fold_is_a_mean_that_forgets_with_its_half_life() -> None:
    first = fold(None, 20.0, 4, 0, CONFIG)
    assert first == CellSpeed(5.0, 4.0, 0)
    same_time = fold(first, 40.0, 4, 0, CONFIG)
    assert same_time.speed_mps == pytest.approx(7.5)
    two_weeks = fold(first, 40.0, 4, CONFIG.half_life_ms, CONFIG)
    # The old four samples count as two now.
    assert two_weeks.weight == pytest.approx(6.0)
    assert two_weeks.speed_mps == pytest.approx((5.0 * 2 + 40.0) / 6)
    with pytest.raises(ValueError, match="count"):
        fold(first, 0.0, 0, 0, CONFIG)


def test_older_samples_do_not_rewind_the_clock() -> None:
    state = fold(None, 10.0, 1, 1000, CONFIG)
    assert fold(state, 10.0, 1, 500, CONFIG).last_ts == 1000


@given(
    batches=st.lists(
        st.tuples(st.floats(1.0, 30.0), st.integers(1, 50), st.integers(0, 10**11)), min_size=1, max_size=20
    )
)
def test_fold_stays_within_the_samples_range(batches: list[tuple[float, int, int]]) -> None:
    state: CellSpeed | None = None
    for mean, count, ts in batches:
        state = fold(state, mean * count, count, ts, CONFIG)
    assert state is not None
    lo, hi = min(b[0] for b in batches), max(b[0] for b in batches)
    assert lo - 1e-9 <= state.speed_mps <= hi + 1e-9


def test_pack_round_trips() -> None:
    value = CellSpeed(7.25, 12.5, MONDAY_0830)
    assert len(value.pack()) == 24
    assert CellSpeed.unpack(value.pack()) == value


def test_lookup_needs_enough_samples_and_falls_back_to_neighbouring_hours() -> None:
    speeds = {cell_key(CELL, 8): CellSpeed(4.0, 3.0, 0), cell_key(CELL, 9): CellSpeed(9.0, 50.0, 0)}
    # Hour 8 has too few samples; hour 9 speaks for it.
    assert lookup(speeds, CELL, MONDAY_0830, CONFIG) == 9.0
    speeds[cell_key(CELL, 8)] = CellSpeed(4.0, 6.0, 0)
    assert lookup(speeds, CELL, MONDAY_0830, CONFIG) == 4.0
    assert lookup(speeds, CELL, MONDAY_0830 + 5 * HOUR_MS, CONFIG) is None
    assert lookup(speeds, CELL + 1, MONDAY_0830, CONFIG) is None


def test_time_along_the_way_sums_each_stretch_at_its_cells_speed() -> None:
    from h3.api import basic_int as h3

    from streams.deliveries.cell_speeds import time_along
    from streams.pings.rules import haversine_m

    start, end = (-23.5614, -46.6559), (-23.5130, -46.6100)  # about 7 km: several res-7 cells
    distance = haversine_m(*start, *end)
    assert time_along(lambda c, ts: 5.0, *start, *end, MONDAY_0830) == pytest.approx(distance / 5.0)
    first = h3.latlng_to_cell(*start, 7)
    mixed = time_along(lambda c, ts: 12.0 if c == first else 4.0, *start, *end, MONDAY_0830)
    assert mixed is not None and distance / 12.0 < mixed < distance / 4.0
    # A cell nobody learned takes the known cells' mean slowness instead of being skipped.
    unknown_first = time_along(lambda c, ts: None if c == first else 4.0, *start, *end, MONDAY_0830)
    assert unknown_first == pytest.approx(distance / 4.0)
    assert time_along(lambda c, ts: None, *start, *end, MONDAY_0830) is None
    assert time_along(lambda c, ts: 9.0, *start, *start, MONDAY_0830) == 0.0


def test_time_along_the_way_rides_each_stretch_at_the_hour_it_is_reached() -> None:
    from streams.deliveries.cell_speeds import time_along
    from streams.pings.rules import haversine_m

    start, end = (-23.5614, -46.6559), (-23.5130, -46.6100)
    distance = haversine_m(*start, *end)
    rush_ends = MONDAY_0830 + 30 * 60_000  # 2 m/s until 9:00, 10 m/s after

    def speed(cell: int, ts: int) -> float:
        return 2.0 if ts < rush_ends else 10.0

    # From 8:50, ten minutes of crawling (about 1.2 km), then the rest after the rush.
    taken = time_along(speed, *start, *end, rush_ends - 10 * 60_000)
    assert taken == pytest.approx(600 + (distance - 1_200) / 10.0, rel=0.06)
    assert time_along(speed, *start, *end, rush_ends) == pytest.approx(distance / 10.0)


def test_fleet_keys_speak_only_with_enough_samples() -> None:
    from streams.deliveries.cell_speeds import dwell_key, lookup_fleet

    speeds = {dwell_key(60): CellSpeed(300.0, 4.0, 0)}
    assert lookup_fleet(speeds, dwell_key(60), CONFIG) is None
    speeds[dwell_key(60)] = fold(speeds[dwell_key(60)], 500.0, 2, 0, CONFIG)
    assert lookup_fleet(speeds, dwell_key(60), CONFIG) == pytest.approx(1700.0 / 6.0)
    assert lookup_fleet(speeds, dwell_key(120), CONFIG) is None
