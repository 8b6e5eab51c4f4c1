"""ETA along the way and while stopped: the stop a driver is in, the dwell the fleet taught, the estimate."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from streams.deliveries.eta import (
    EtaConfig,
    EtaMethod,
    Stop,
    dwell_samples,
    estimate_along,
    expected_dwell_s,
    is_crawling,
    remaining_distance_m,
    ride_ratio,
    riding_seconds,
    update_stop,
)

CONFIG = EtaConfig()
LAT, LON = -23.5614, -46.6559
DROP_LAT, DROP_LON = -23.5430, -46.6450
NOW = 1_790_000_000_000
M_PER_DEG = 111_195.0


def _north(m: float) -> float:
    return LAT + m / M_PER_DEG


def test_estimate_along_is_the_learned_time_times_the_detour_plus_the_dwell() -> None:
    remaining = remaining_distance_m(LAT, LON, DROP_LAT, DROP_LON, CONFIG)
    riding = estimate_along(LAT, LON, DROP_LAT, DROP_LON, NOW, 400.0, CONFIG)
    assert riding.eta_ms == NOW + round(400.0 * CONFIG.detour_factor * 1000)
    assert riding.method == EtaMethod.CELL and riding.speed_mps == pytest.approx(remaining / 520.0)
    waiting = estimate_along(LAT, LON, DROP_LAT, DROP_LON, NOW, 400.0, CONFIG, dwell_s=300.0)
    assert waiting.eta_ms == riding.eta_ms + 300_000 and waiting.method == EtaMethod.DWELL
    at_door = estimate_along(DROP_LAT, DROP_LON, DROP_LAT, DROP_LON, NOW, 0.0, CONFIG, dwell_s=300.0)
    assert at_door.method == EtaMethod.ARRIVED and at_door.eta_ms == NOW


def test_estimate_along_keeps_the_speed_bounds() -> None:
    remaining = remaining_distance_m(LAT, LON, DROP_LAT, DROP_LON, CONFIG)
    crawl = estimate_along(LAT, LON, DROP_LAT, DROP_LON, NOW, 1e9, CONFIG)
    assert crawl.speed_mps == pytest.approx(CONFIG.min_speed_mps)
    fly = estimate_along(LAT, LON, DROP_LAT, DROP_LON, NOW, 1.0, CONFIG)
    assert fly.eta_ms == NOW + round(remaining / CONFIG.max_speed_mps * 1000)


def test_a_stop_lasts_while_the_driver_stays_within_the_radius() -> None:
    stop, ended = update_stop(None, LAT, LON, NOW, None, True, CONFIG)
    assert stop == Stop(LAT, LON, NOW, NOW) and ended is None
    for i in range(1, 20):  # GPS noise and a walk to the counter: still the same stop
        stop, ended = update_stop(stop, _north(15 * (i % 2)), LON, NOW + i * 30_000, 0.0, True, CONFIG)
        assert ended is None and stop.since_ts == NOW and stop.in_transit_since == NOW
    stop, ended = update_stop(stop, _north(200), LON, NOW + 600_000, 6.0, True, CONFIG)
    assert ended == 600.0 and stop == Stop(_north(200), LON, NOW + 600_000, NOW + 600_000)


def test_a_stop_counts_in_transit_only_from_the_pickup_and_until_the_delivery_ends() -> None:
    stop, _ = update_stop(None, LAT, LON, NOW, 0.0, False, CONFIG)  # waiting for the order: not in transit
    stop, _ = update_stop(stop, LAT, LON, NOW + 100_000, 0.0, True, CONFIG)  # picked up, still standing
    assert stop.since_ts == NOW and stop.in_transit_since == NOW + 100_000
    stop, ended = update_stop(stop, _north(300), LON, NOW + 160_000, 5.0, True, CONFIG)
    assert ended == 60.0
    stop, _ = update_stop(stop, _north(300), LON, NOW + 200_000, 0.0, False, CONFIG)  # handed over
    assert stop.in_transit_since is None
    _, ended = update_stop(stop, _north(900), LON, NOW + 260_000, 5.0, False, CONFIG)
    assert ended is None, "a stop that is not a wait on the way teaches nothing"


def test_a_phone_that_says_it_moves_ends_the_stop() -> None:
    # A frozen chip repeats its place while the rider goes on: no dwell is assumed for it.
    stop, _ = update_stop(None, LAT, LON, NOW, 0.0, True, CONFIG)
    stop, ended = update_stop(stop, LAT, LON, NOW + 90_000, 7.5, True, CONFIG)
    assert ended == 90.0 and stop.since_ts == NOW + 90_000


def test_crawling_is_moving_far_below_what_the_cell_usually_allows() -> None:
    assert is_crawling(1.5, 8.0, CONFIG)  # a jam where riders usually do 8 m/s
    assert not is_crawling(4.0, 8.0, CONFIG)  # slow traffic, still riding
    assert not is_crawling(0.5, 8.0, CONFIG)  # parked: the stop radius speaks for that
    assert not is_crawling(1.5, None, CONFIG), "without a learned speed nothing says what is slow here"
    assert not is_crawling(None, 8.0, CONFIG)
    assert not is_crawling(float("nan"), 8.0, CONFIG)
    assert not is_crawling(1.5, 8.0, EtaConfig(crawl_fraction=0.0))


def test_a_crawl_holds_the_driver_up_wherever_it_gets_to() -> None:
    stop, _ = update_stop(None, LAT, LON, NOW, 8.0, True, CONFIG)
    for i in range(1, 61):  # 300 s at 1.5 m/s: 450 m, far beyond the stop radius
        at = NOW + i * 5_000
        stop, ended = update_stop(stop, _north(7.5 * i), LON, at, 1.5, True, CONFIG, crawling=True)
        assert ended is None and stop.in_transit_since == NOW
    assert (stop.lat, stop.lon) == (_north(450.0), LON), "held up where the crawl has got to"
    stop, ended = update_stop(stop, _north(490.0), LON, NOW + 305_000, 8.0, True, CONFIG)
    assert ended == 305.0 and stop.since_ts == NOW + 305_000
    # Without the crawl, the same fixes are riding: every one starts a new stop and none is held up.
    stop, _ = update_stop(None, LAT, LON, NOW, 8.0, True, CONFIG)
    stop, ended = update_stop(stop, _north(7.5), LON, NOW + 5_000, 1.5, True, CONFIG)
    assert ended == 5.0 and stop.since_ts == NOW + 5_000


def test_dwell_samples_are_the_seconds_beyond_each_threshold_passed() -> None:
    assert dwell_samples(30.0, CONFIG) == []
    assert dwell_samples(300.0, CONFIG) == [(60, 240.0), (120, 180.0), (240, 60.0)]


def test_expected_dwell_comes_from_the_highest_threshold_passed() -> None:
    learned = {60: 400.0, 120: 340.0, 240: 220.0}.get
    stop = Stop(LAT, LON, NOW - 900_000, NOW)
    assert expected_dwell_s(stop, NOW + 30_000, learned, CONFIG) == 0.0  # a red light, likely
    assert expected_dwell_s(stop, NOW + 90_000, learned, CONFIG) == pytest.approx(370.0)
    assert expected_dwell_s(stop, NOW + 300_000, learned, CONFIG) == pytest.approx(160.0)
    assert expected_dwell_s(stop, NOW + 3_000_000, learned, CONFIG) == 0.0  # 480 s not learned yet
    assert expected_dwell_s(Stop(LAT, LON, NOW, None), NOW + 300_000, learned, CONFIG) == 0.0
    assert expected_dwell_s(None, NOW, learned, CONFIG) == 0.0


@given(st.floats(min_value=0, max_value=4000), st.floats(min_value=0, max_value=4000))
def test_the_expected_end_of_a_stop_never_moves_earlier_within_a_threshold(a: float, b: float) -> None:
    learned = {60: 400.0, 120: 340.0, 240: 220.0, 480: 60.0}.get
    stop = Stop(LAT, LON, NOW, NOW)
    # The moments as the clock gives them, in whole milliseconds; ends are compared at those very moments.
    lo, hi = (int(s * 1000) / 1000 for s in sorted((a, b)))
    for elapsed in (lo, hi):
        assert expected_dwell_s(stop, NOW + round(elapsed * 1000), learned, CONFIG) >= 0.0
    same = [t for t in CONFIG.dwell_thresholds_s if t <= lo] == [
        t for t in CONFIG.dwell_thresholds_s if t <= hi
    ]
    if same and lo >= 60:
        end_lo = lo + expected_dwell_s(stop, NOW + round(lo * 1000), learned, CONFIG)
        end_hi = hi + expected_dwell_s(stop, NOW + round(hi * 1000), learned, CONFIG)
        assert end_hi >= end_lo - 1e-6


def test_config_rejects_bad_stop_settings() -> None:
    with pytest.raises(ValueError, match="stop_radius_m"):
        EtaConfig(stop_radius_m=0)
    with pytest.raises(ValueError, match="crawl_fraction"):
        EtaConfig(crawl_fraction=1.0)
    with pytest.raises(ValueError, match="dwell_thresholds_s"):
        EtaConfig(dwell_thresholds_s=(0, 60))


def test_riding_time_is_scaled_by_the_learned_calibration() -> None:
    plain = riding_seconds(400.0, 3_000.0, CONFIG)
    assert plain == pytest.approx(400.0 * CONFIG.detour_factor)
    assert riding_seconds(400.0, 3_000.0, CONFIG, 0.9) == pytest.approx(0.9 * plain)
    # The speed bounds still hold after the calibration.
    assert riding_seconds(400.0, 3_000.0, CONFIG, 0.01) == pytest.approx(3_000.0 / CONFIG.max_speed_mps)
    along = estimate_along(LAT, LON, DROP_LAT, DROP_LON, NOW, 400.0, CONFIG, calibration=0.9)
    assert along.eta_ms == NOW + round(0.9 * plain * 1000)


def test_the_ride_ratio_is_riding_taken_over_riding_foreseen_without_the_long_hold_ups() -> None:
    # Two ETAs: at 0 s foreseeing 600 s of riding, at 300 s foreseeing 330 s; arrival at 660 s.
    rides = [[NOW, 600_000, 0], [NOW + 300_000, 330_000, 0]]
    assert ride_ratio(rides, NOW + 660_000, 0, CONFIG) == pytest.approx((660 + 360) / (600 + 330))
    # A 200 s wait between the two ETAs: riding after the first one is 200 s shorter than the clock says.
    rides = [[NOW, 600_000, 0], [NOW + 500_000, 150_000, 200_000]]
    assert ride_ratio(rides, NOW + 660_000, 200_000, CONFIG) == pytest.approx((460 + 160) / (600 + 150))


def test_a_ride_ratio_out_of_bounds_or_without_riding_teaches_nothing() -> None:
    assert ride_ratio([], NOW, 0, CONFIG) is None
    assert ride_ratio([[NOW, 0, 0]], NOW + 60_000, 0, CONFIG) is None
    # Twice as long as foreseen: a stop the phone never showed (offline), not how riders ride.
    assert ride_ratio([[NOW, 300_000, 0]], NOW + 600_000, 0, CONFIG) is None
    assert ride_ratio([[NOW, 300_000, 0]], NOW + 100_000, 0, CONFIG) is None
    assert ride_ratio([[NOW, 300_000, 0]], NOW + 330_000, 0, CONFIG) == pytest.approx(1.1)
