"""Movement windows; stall, offline and frozen-GPS detectors, with the timer path and clock edges."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapely.geometry import Polygon

from streams.deliveries import stall
from streams.deliveries.stall import Movement, StallConfig
from streams.deliveries.state import DriverState, Rejection, apply_event
from streams.deliveries.tracker import TrackerConfig, alert_id, on_event, on_ping, on_tick

T0 = 1_790_000_010_000  # a multiple of the 30 s step
MIN = 60_000
DRIVER = "drv-1"
ORIGIN = (-23.55, -46.63)
DROPOFF = (-23.60, -46.70)
CONFIG = TrackerConfig()


def north(metres: float, lat: float = ORIGIN[0]) -> float:
    return lat + metres / stall.M_PER_DEG_LAT


def ping(ts: int, lat: float, lon: float = ORIGIN[1], speed: float | None = None) -> dict[str, Any]:
    return {"device_ts": ts, "lat": lat, "lon": lon, "h3_r9": 1, "accuracy_m": 5.0, "speed_mps": speed}


def carrying(status: str = "picked_up") -> DriverState:
    state = DriverState()
    assigned = {
        "event_id": "e1",
        "delivery_id": "dlv-1",
        "driver_id": DRIVER,
        "type": "assigned",
        "ts": T0 - 20 * MIN,
        "pickup_lat": -23.40,
        "pickup_lon": -46.50,
        "dropoff_lat": DROPOFF[0],
        "dropoff_lon": DROPOFF[1],
    }
    apply_event(state, assigned)
    if status != "assigned":
        apply_event(state, {**assigned, "event_id": "e2", "type": status})
    return state


def ride(
    state: DriverState,
    positions: list[tuple[int, float]],
    *,
    arrival_delay: int = 500,
    config: TrackerConfig = CONFIG,
) -> list[dict[str, Any]]:
    """Feed (ts, lat) pings arriving ``arrival_delay`` ms after their fix; collect the alerts."""
    alerts = []
    for ts, lat in positions:
        alerts += on_ping(state, DRIVER, ping(ts, lat), ts + arrival_delay, config)
    return alerts


def moving(start: int, end: int, from_m: float = 0.0, mps: float = 8.0, every: int = 5_000) -> list[Any]:
    return [(t, north(from_m + (t - start) / 1000 * mps)) for t in range(start, end, every)]


def standing(start: int, end: int, at_m: float, every: int = 5_000, jitter_m: float = 8.0) -> list[Any]:
    return [(t, north(at_m + jitter_m * math.sin(t / 7_000))) for t in range(start, end, every)]


def kinds(alerts: list[dict[str, Any]]) -> list[str]:
    return [a["kind"] for a in alerts]


# --- windows -------------------------------------------------------------------------------------------


def test_a_fix_lands_in_every_hopping_window_that_holds_it() -> None:
    movement, config = Movement(), StallConfig()
    stall.observe(movement, T0 + 1_000, *ORIGIN, config)
    starts = [e.start for e in movement.windows]
    assert starts == list(range(T0 - 270_000, T0 + 1, 30_000))  # window / step = 10 windows
    assert all(e.start <= T0 + 1_000 < e.start + config.window_ms for e in movement.windows)


def test_window_edges_are_half_open() -> None:
    movement, config = Movement(), StallConfig()
    stall.observe(movement, T0, *ORIGIN, config)  # exactly on a step: starts the window at T0
    assert movement.windows[-1].start == T0
    assert movement.windows[0].start == T0 - 270_000  # [T0-300s, T0) does not hold T0
    assert stall.close_windows(movement, T0 + 29_999, config) == []
    [closed] = stall.close_windows(movement, T0 + 30_000, config)
    assert closed.start == T0 - 270_000


def test_a_fix_for_a_closed_window_is_dropped_and_never_reopens_it() -> None:
    movement, config = Movement(), StallConfig()
    stall.observe(movement, T0, *ORIGIN, config)
    stall.close_windows(movement, T0 + 10 * MIN, config)
    stall.observe(movement, T0 + MIN, *ORIGIN, config)
    assert movement.windows == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(0, 60 * MIN), min_size=1, max_size=80))
def test_open_windows_stay_bounded_whatever_the_order_of_fixes(offsets: list[int]) -> None:
    movement, config = Movement(), StallConfig()
    for offset in offsets:
        stall.observe(movement, T0 + offset, *ORIGIN, config)
        stall.close_windows(movement, movement.watermark, config)
        assert len(movement.windows) <= config.window_ms // config.step_ms + 1
        assert all(e.start + config.window_ms > movement.closed_until for e in movement.windows)


def test_still_needs_fixes_in_the_first_and_last_step_and_a_small_extent() -> None:
    config = StallConfig()
    extent = stall.Extent(T0, *ORIGIN[:1] * 2, *ORIGIN[1:] * 2, T0 + 1_000, T0 + 270_000, fixes=30)
    assert stall.is_still(extent, config)
    late_start = stall.Extent(T0, *ORIGIN[:1] * 2, *ORIGIN[1:] * 2, T0 + 30_000, T0 + 290_000, fixes=30)
    assert not stall.is_still(late_start, config)
    # Silent for the last minutes of the window: what the driver did then is unknown, not still.
    early_end = stall.Extent(T0, *ORIGIN[:1] * 2, *ORIGIN[1:] * 2, T0 + 1_000, T0 + 269_999, fixes=30)
    assert not stall.is_still(early_end, config)
    wide = stall.Extent(T0, ORIGIN[0], north(201), *ORIGIN[1:] * 2, T0, T0 + 200_000, fixes=30)
    assert not stall.is_still(wide, config)


def test_geofence_circles_have_their_radius_in_metres_at_any_latitude() -> None:
    for lat in (-60.0, -23.5, 0.0, 45.0):
        fence = stall.circle(lat, 10.0, 150.0)
        east = 140 / (stall.M_PER_DEG_LAT * math.cos(math.radians(lat)))
        assert stall.in_geofence(lat, 10.0 + east, [fence])
        assert not stall.in_geofence(lat, 10.0 + east * 170 / 140, [fence])
        assert stall.in_geofence(north(140, lat), 10.0, [fence])


def test_depots_are_read_from_geojson() -> None:
    square = {
        "type": "Polygon",
        "coordinates": [
            [[-46.64, -23.56], [-46.62, -23.56], [-46.62, -23.54], [-46.64, -23.54], [-46.64, -23.56]]
        ],
    }
    collection = {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": square}]}
    for data in (collection, collection["features"][0], square):
        [depot] = stall.depots_from_geojson(data)  # type: ignore[arg-type]
        assert stall.in_geofence(*ORIGIN, [depot]) and not stall.in_geofence(*DROPOFF, [depot])


# --- stalls --------------------------------------------------------------------------------------------


def test_a_stop_in_transit_raises_one_stall_and_one_resolution() -> None:
    state = carrying()
    stop_at = T0 + 3 * MIN
    trip = moving(T0, stop_at) + standing(stop_at, stop_at + 9 * MIN, at_m=1_440)
    alerts = ride(state, trip)
    [stalled] = alerts
    assert stalled["kind"] == "stall" and stalled["delivery_id"] == "dlv-1"
    assert stop_at <= stalled["started_at"] <= stop_at + 30_000
    delay = stalled["detected_at"] - stop_at
    assert 5 * MIN <= delay <= 5 * MIN + 30_000 + 5_000 + 500
    assert stalled["alert_id"] == alert_id("stall", DRIVER, stalled["started_at"])
    assert state.status() == "stalled"
    again = ride(state, moving(stop_at + 9 * MIN, stop_at + 15 * MIN, from_m=1_440))
    assert kinds(again) == ["stall_resolved"]
    assert again[0]["alert_id"] == stalled["alert_id"] + "-resolved"
    assert again[0]["started_at"] == stalled["started_at"] and state.status() == "on_delivery"


def test_a_stop_shorter_than_the_window_is_no_stall() -> None:
    state = carrying()
    trip = moving(T0, T0 + 3 * MIN) + standing(T0 + 3 * MIN, T0 + 7 * MIN, at_m=1_440)
    trip += moving(T0 + 7 * MIN, T0 + 20 * MIN, from_m=1_440)
    assert ride(state, trip) == []


def test_a_traffic_jam_slow_but_moving_is_no_stall() -> None:
    assert ride(carrying(), moving(T0, T0 + 20 * MIN, mps=1.0)) == []


def test_a_slow_drift_is_paged_once_per_episode_not_on_every_window() -> None:
    # 0.4 m/s keeps five minutes inside 100 m: a stall; once 100 m away it is resolved, and only
    # windows that began after that can start the next episode.
    alerts = ride(carrying(), moving(T0, T0 + 20 * MIN, mps=0.4))
    assert kinds(alerts) == ["stall", "stall_resolved"] * (len(alerts) // 2) + ["stall"] * (len(alerts) % 2)
    assert len(alerts) <= 6  # one episode per 100 m crawled, not one per closed window
    for resolved, stalled in zip(alerts[1::2], alerts[2::2], strict=False):
        assert stalled["detected_at"] - resolved["detected_at"] >= 5 * MIN


@pytest.mark.parametrize("status", ["assigned", "arrived"])
def test_no_stall_unless_a_delivery_is_in_transit(status: str) -> None:
    assert ride(carrying(status), standing(T0, T0 + 15 * MIN, at_m=0)) == []


def test_no_stall_inside_the_dropoff_geofence_or_a_depot() -> None:
    state = carrying()
    at_dropoff = [(ts, DROPOFF[0]) for ts in range(T0, T0 + 15 * MIN, 5_000)]
    alerts = []
    for ts, lat in at_dropoff:
        alerts += on_ping(state, DRIVER, ping(ts, lat, DROPOFF[1]), ts, CONFIG)
    assert alerts == []
    d = 0.002
    depot = Polygon(
        [(ORIGIN[1] - d, ORIGIN[0] - d), (ORIGIN[1] + d, ORIGIN[0] - d), (ORIGIN[1], ORIGIN[0] + d)]
    )
    assert ride(carrying(), standing(T0, T0 + 15 * MIN, at_m=0), config=TrackerConfig(depots=[depot])) == []
    assert kinds(ride(carrying(), standing(T0, T0 + 15 * MIN, at_m=0))) == ["stall"]


def test_the_stop_clock_starts_at_pickup_and_outside_the_geofences() -> None:
    state = carrying("assigned")
    alerts = ride(state, standing(T0, T0 + 10 * MIN, at_m=0))  # waiting for the order: not in transit
    pickup = {"event_id": "e3", "delivery_id": "dlv-1", "driver_id": DRIVER, "type": "picked_up"}
    on_event(state, DRIVER, {**pickup, "ts": T0 + 10 * MIN}, T0 + 10 * MIN, CONFIG)
    alerts += ride(state, standing(T0 + 10 * MIN, T0 + 14 * MIN, at_m=0))
    assert alerts == [], "standing before the pickup does not count"
    [stalled] = ride(state, standing(T0 + 14 * MIN, T0 + 17 * MIN, at_m=0))
    assert stalled["kind"] == "stall" and stalled["started_at"] >= T0 + 10 * MIN


def test_a_late_batch_from_an_old_stop_raises_nothing() -> None:
    state = carrying()
    old_stop = standing(T0, T0 + 10 * MIN, at_m=0)
    alerts = ride(state, old_stop, arrival_delay=60 * MIN)  # uploaded an hour later
    alerts += ride(state, moving(T0 + 10 * MIN, T0 + 12 * MIN, every=5_000), arrival_delay=60 * MIN)
    assert alerts == []


def test_a_late_batch_of_a_stop_still_going_on_alerts_with_the_stop_start() -> None:
    state = carrying()
    alerts = ride(state, standing(T0, T0 + 10 * MIN, at_m=0), arrival_delay=4 * MIN)
    # The backlog ends with windows that closed long ago: the stop is only known, not yet paged.
    assert alerts == []
    live = ride(state, standing(T0 + 10 * MIN, T0 + 11 * MIN, at_m=0))
    [stalled] = live
    assert stalled["kind"] == "stall" and stalled["started_at"] == T0


def test_late_pings_out_of_order_never_resolve_or_reopen_a_stall() -> None:
    state = carrying()
    alerts = ride(state, standing(T0, T0 + 8 * MIN, at_m=0))
    assert kinds(alerts) == ["stall"]
    # A straggler from far away, older than the stop: late, it changes nothing.
    assert on_ping(state, DRIVER, ping(T0 - 20 * MIN, north(5_000)), T0 + 8 * MIN, CONFIG) == []
    assert state.status() == "stalled"


def test_finishing_the_delivery_resolves_the_stall() -> None:
    state = carrying()
    assert kinds(ride(state, standing(T0, T0 + 8 * MIN, at_m=0))) == ["stall"]
    done = {
        "event_id": "e9",
        "delivery_id": "dlv-1",
        "driver_id": DRIVER,
        "type": "failed",
        "ts": T0 + 9 * MIN,
    }
    _, alerts = on_event(state, DRIVER, done, T0 + 9 * MIN, CONFIG)
    assert kinds(alerts) == ["delivery_failed", "stall_resolved"] and alerts[1]["detail"] == "delivery failed"
    assert ride(state, standing(T0 + 8 * MIN, T0 + 20 * MIN, at_m=0)) == []


# --- the timer path ------------------------------------------------------------------------------------


def tick_every(state: DriverState, start: int, end: int, every: int = 5_000) -> list[dict[str, Any]]:
    alerts = []
    for now in range(start, end, every):
        alerts += on_tick(state, DRIVER, now, CONFIG)
    return alerts


def test_the_timer_catches_a_driver_who_stood_a_whole_window_and_went_silent() -> None:
    state = carrying()
    ride(state, moving(T0, T0 + 2 * MIN) + standing(T0 + 2 * MIN, T0 + 7 * MIN, at_m=960))
    # No later fix closes the window the stop filled: only the wall clock does.
    alerts = tick_every(state, T0 + 7 * MIN, T0 + 14 * MIN)
    assert kinds(alerts) == ["stall", "offline"]
    stalled, offline = alerts
    assert stalled["started_at"] == T0 + 2 * MIN
    assert stalled["detected_at"] - stalled["started_at"] <= 5 * MIN + 15_000 + 5_000
    assert offline["started_at"] == T0 + 7 * MIN - 5_000
    assert offline["detected_at"] == offline["started_at"] + 3 * MIN
    assert tick_every(state, T0 + 14 * MIN, T0 + 30 * MIN) == []
    assert state.status() == "offline"


def test_a_driver_who_stopped_and_went_silent_within_a_window_is_offline_not_stalled() -> None:
    state = carrying()
    # Three minutes at the stop, more than half a window, then nothing: the silence is the offline rule's.
    ride(state, moving(T0, T0 + 2 * MIN) + standing(T0 + 2 * MIN, T0 + 5 * MIN, at_m=960))
    assert kinds(tick_every(state, T0 + 5 * MIN, T0 + 30 * MIN)) == ["offline"]
    assert state.status() == "offline"


def test_a_phone_falling_silent_a_moment_into_a_window_is_offline_not_stalled() -> None:
    state = carrying()
    ride(state, moving(T0, T0 + 5 * MIN) + standing(T0 + 5 * MIN, T0 + 5 * MIN + 20_000, at_m=2_400))
    assert kinds(tick_every(state, T0 + 5 * MIN, T0 + 20 * MIN)) == ["offline"]


def play(state: DriverState, uploads: list[tuple[int, int, float]], until: int) -> list[dict[str, Any]]:
    """Feed (upload, ts, lat) pings in upload order with a tick every 5 s between them; collect the alerts."""
    alerts, pending = [], sorted(uploads)
    for now in range(pending[0][0], until, 5_000):
        while pending and pending[0][0] <= now:
            upload, ts, lat = pending.pop(0)
            alerts += on_ping(state, DRIVER, ping(ts, lat), upload, CONFIG)
        alerts += on_tick(state, DRIVER, now, CONFIG)
    return alerts


def test_a_stop_whose_end_was_uploaded_late_is_offline_then_nothing() -> None:
    state = carrying()
    live = moving(T0, T0 + 2 * MIN) + standing(T0 + 2 * MIN, T0 + 5 * MIN, at_m=960)
    # The phone loses its connection three minutes into the stop; the driver rides on four minutes later
    # and the rest of the stop goes up with the backlog, when it is old news.
    backlog = standing(T0 + 5 * MIN, T0 + 9 * MIN, at_m=960)
    riding = moving(T0 + 9 * MIN, T0 + 14 * MIN, from_m=960)
    uploads = [(ts + 500, ts, lat) for ts, lat in live + riding]
    uploads += [(T0 + 13 * MIN, ts, lat) for ts, lat in backlog]
    alerts = play(state, uploads, T0 + 16 * MIN)
    assert kinds(alerts) == ["offline", "offline_resolved"]
    assert alerts[0]["started_at"] == T0 + 5 * MIN - 5_000


def test_ticks_alone_never_make_a_moving_driver_stalled() -> None:
    state = carrying()
    ride(state, moving(T0, T0 + 10 * MIN))
    assert kinds(tick_every(state, T0 + 10 * MIN, T0 + 20 * MIN)) == ["offline"]


def test_offline_fires_exactly_at_the_threshold_once_per_gap() -> None:
    state = carrying()
    ride(state, [(T0, ORIGIN[0])])
    assert on_tick(state, DRIVER, T0 + 3 * MIN - 1, CONFIG) == []
    [offline] = on_tick(state, DRIVER, T0 + 3 * MIN, CONFIG)
    assert offline["kind"] == "offline" and offline["started_at"] == T0
    assert on_tick(state, DRIVER, T0 + 10 * MIN, CONFIG) == []
    back = on_ping(state, DRIVER, ping(T0 + 11 * MIN, ORIGIN[0]), T0 + 11 * MIN, CONFIG)
    assert kinds(back) == ["offline_resolved"] and back[0]["alert_id"] == offline["alert_id"] + "-resolved"
    [second] = on_tick(state, DRIVER, T0 + 14 * MIN, CONFIG)
    assert second["kind"] == "offline" and second["alert_id"] != offline["alert_id"]


def test_no_offline_without_an_active_delivery_or_a_fix() -> None:
    idle = DriverState()
    ride(idle, [(T0, ORIGIN[0])])
    assert on_tick(idle, DRIVER, T0 + 60 * MIN, CONFIG) == []
    assert on_tick(carrying(), DRIVER, T0 + 60 * MIN, CONFIG) == []


# --- frozen GPS ----------------------------------------------------------------------------------------


def test_identical_fixes_while_claiming_speed_raise_frozen_gps_once_per_run() -> None:
    state = carrying()
    alerts = []
    for i in range(12):
        alerts += on_ping(state, DRIVER, ping(T0 + i * 5_000, ORIGIN[0], speed=9.0), T0 + i * 5_000, CONFIG)
    [frozen] = alerts
    assert frozen["kind"] == "frozen_gps" and frozen["started_at"] == T0
    assert frozen["detected_at"] == T0 + 20_000  # the 5th repeat, 20 s into the run
    on_ping(state, DRIVER, ping(T0 + 70_000, north(300), speed=9.0), T0 + 70_000, CONFIG)
    assert "frozen_gps" not in state.alerts
    again = []
    for i in range(6):
        ts = T0 + 80_000 + i * 5_000
        again += on_ping(state, DRIVER, ping(ts, north(600), speed=9.0), ts, CONFIG)
    assert kinds(again) == ["frozen_gps"]


def test_a_frozen_chip_after_a_stop_is_frozen_gps_not_a_stall() -> None:
    state = carrying()
    alerts = ride(state, standing(T0, T0 + 2 * MIN, at_m=0))
    for ts in range(T0 + 2 * MIN, T0 + 6 * MIN, 5_000):  # the rider moves on; the chip repeats one fix
        alerts += on_ping(state, DRIVER, ping(ts, north(0), speed=9.0), ts + 500, CONFIG)
    alerts += ride(state, moving(T0 + 6 * MIN, T0 + 9 * MIN, from_m=1_900))
    assert kinds(alerts) == ["frozen_gps"]


def test_identical_fixes_of_a_parked_phone_are_not_frozen() -> None:
    state = carrying()
    alerts = []
    for i in range(12):
        alerts += on_ping(state, DRIVER, ping(T0 + i * 5_000, ORIGIN[0], speed=0.0), T0 + i * 5_000, CONFIG)
    assert "frozen_gps" not in kinds(alerts)


# --- determinism ---------------------------------------------------------------------------------------


def test_replaying_inputs_from_a_packed_state_gives_identical_alerts() -> None:
    state = carrying()
    trip = moving(T0, T0 + 3 * MIN) + standing(T0 + 3 * MIN, T0 + 12 * MIN, at_m=1_440)
    ride(state, trip[:30])
    snapshot = state.pack()
    first = ride(state, trip[30:]) + tick_every(state, T0 + 12 * MIN, T0 + 20 * MIN)
    replayed_state = DriverState.unpack(snapshot)
    replay = ride(replayed_state, trip[30:]) + tick_every(replayed_state, T0 + 12 * MIN, T0 + 20 * MIN)
    assert first == replay and kinds(first) == ["stall", "offline"]
    assert replayed_state.pack() == state.pack()


def test_an_event_from_a_clock_far_ahead_or_beyond_the_horizon_moves_nothing() -> None:
    state = DriverState()
    assigned = {
        "event_id": "e-far", "delivery_id": "d-far", "driver_id": DRIVER, "type": "assigned",
        "pickup_lat": -23.56, "pickup_lon": -46.65, "dropoff_lat": -23.59, "dropoff_lon": -46.68,
    }  # fmt: skip
    ahead, _ = on_event(state, DRIVER, {**assigned, "ts": 2**62 - 1}, T0, CONFIG)
    assert isinstance(ahead, Rejection) and ahead.reason == "future_ts"
    stale, _ = on_event(state, DRIVER, {**assigned, "ts": T0 - 25 * 60 * MIN}, T0, CONFIG)
    assert isinstance(stale, Rejection) and stale.reason == "too_old"
    assert state.last_update is None and not state.deliveries and not state.event_hashes
    # A minute ahead of the processing time is within the bound.
    applied, _ = on_event(
        state, DRIVER, {**assigned, "ts": T0 + 60_000}, T0, CONFIG
    )  # a minute ahead is fine
    assert not isinstance(applied, Rejection) and state.last_update == T0 + 60_000
