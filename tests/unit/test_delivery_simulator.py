"""The delivery simulator's ground truth: each episode really looks like what it claims to be."""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime
from functools import cache
from typing import Any

import pytest

from simulator.deliveries import (
    DeliverySimConfig,
    DriverDay,
    Episode,
    area_speed_mps,
    history_pings,
    simulate_deliveries,
)
from streams.pings.rules import haversine_m

START = int(datetime(2026, 11, 24, 3, 0, tzinfo=UTC).timestamp() * 1000)  # Tuesday 00:00 in São Paulo
# Episodes evenly spread, so that a small fleet has several of each kind to judge.
CONFIG = DeliverySimConfig(
    drivers=90, minutes=24, start_ms=START + 10 * 3_600_000, seed=3, weights=(0.09,) + (0.13,) * 7
)
N_MS = CONFIG.stall_minutes * 60_000
M_MS = CONFIG.offline_minutes * 60_000


@cache
def days() -> tuple[DriverDay, ...]:
    return tuple(simulate_deliveries(CONFIG))


def _episodes(kind: str) -> list[tuple[DriverDay, Episode]]:
    found = [(d, e) for d in days() for e in d.episodes if e.kind == kind and e.complete]
    assert len(found) >= 3, f"too few {kind} episodes to judge"
    return found


def _fixes(day: DriverDay, start: int, end: int) -> list[dict[str, Any]]:
    return [p for p in day.pings if start <= p["device_ts"] <= end]


def _extent_m(fixes: list[dict[str, Any]]) -> float:
    lats, lons = [p["lat"] for p in fixes], [p["lon"] for p in fixes]
    return haversine_m(min(lats), min(lons), max(lats), max(lons)) / 2


def _delivery(day: DriverDay, delivery_id: str) -> Any:
    return next(d for d in day.deliveries if d.delivery_id == delivery_id)


def test_the_run_is_deterministic_and_has_every_episode() -> None:
    again = simulate_deliveries(CONFIG)
    assert [d.pings for d in again] == [d.pings for d in days()]
    kinds = Counter(e.kind for d in days() for e in d.episodes)
    assert set(kinds) == {"stall", "wait_pickup", "wait_dropoff", "jam", "offline", "late_batch", "frozen"}


def test_events_follow_the_delivery_steps_in_time() -> None:
    steps = ["assigned", "accepted", "picked_up", "en_route", "arrived", "delivered"]
    for day in days():
        by_delivery: dict[str, list[dict[str, Any]]] = {}
        for event in day.events:
            by_delivery.setdefault(event["delivery_id"], []).append(event)
        for delivery in day.deliveries:
            events = by_delivery[delivery.delivery_id]
            assert [e["type"] for e in events] == steps[: len(events)]
            assert [e["ts"] for e in events] == sorted(e["ts"] for e in events)
            assert events[0]["promised_at"] > events[0]["ts"]
            if delivery.arrived_at is not None:
                arrived = next(e for e in events if e["type"] == "arrived")
                assert delivery.arrived_at <= arrived["ts"]


def test_actual_arrival_is_at_the_dropoff() -> None:
    arrivals = 0
    for day in days():
        for d in day.deliveries:
            if d.arrived_at is None:
                continue
            arrivals += 1
            first = min(
                (p for p in day.pings if p["device_ts"] >= d.arrived_at), key=lambda p: p["device_ts"]
            )
            assert haversine_m(first["lat"], first["lon"], *d.dropoff) < 40
    assert arrivals >= 20


def test_stalls_stay_within_the_radius_outside_the_geofences_for_longer_than_n() -> None:
    for day, ep in _episodes("stall"):
        assert ep.end_ms - ep.start_ms >= 1.4 * N_MS
        fixes = _fixes(day, ep.start_ms, ep.end_ms)
        assert _extent_m(fixes) < 60
        d = _delivery(day, ep.delivery_id)
        for fix in fixes:
            assert haversine_m(fix["lat"], fix["lon"], *d.pickup) > 300
            assert haversine_m(fix["lat"], fix["lon"], *d.dropoff) > 300
        assert ep.expected_alert == "stall"


@pytest.mark.parametrize(("kind", "place"), [("wait_pickup", "pickup"), ("wait_dropoff", "dropoff")])
def test_long_waits_are_inside_the_geofence_while_in_transit(kind: str, place: str) -> None:
    for day, ep in _episodes(kind):
        assert ep.end_ms - ep.start_ms >= 1.4 * N_MS
        assert ep.expected_alert is None
        d = _delivery(day, ep.delivery_id)
        for fix in _fixes(day, ep.start_ms + 6000, ep.end_ms):
            assert haversine_m(fix["lat"], fix["lon"], *getattr(d, place)) < 60
        picked = next(e for e in day.events if e["delivery_id"] == d.delivery_id and e["type"] == "picked_up")
        assert picked["ts"] <= ep.start_ms


def test_jams_are_slow_but_leave_the_radius_in_every_window() -> None:
    for day, ep in _episodes("jam"):
        assert ep.expected_alert is None
        for t in range(ep.start_ms, int(ep.end_ms - N_MS), 30_000):
            fixes = _fixes(day, t + 1, int(t + N_MS))  # the fix at the start is still at full speed
            assert _extent_m(fixes) > 120
            assert all(p["speed_mps"] < 2.0 for p in fixes)


@pytest.mark.parametrize("kind", ["offline", "late_batch"])
def test_offline_gaps_send_nothing_live_for_longer_than_m(kind: str) -> None:
    for day, ep in _episodes(kind):
        assert ep.expected_alert == "offline"
        live = [p for p in day.pings if p["upload_at"] - p["device_ts"] < 5000]
        after = min(p["device_ts"] for p in live if p["device_ts"] > ep.start_ms)
        assert after - ep.start_ms >= 1.4 * M_MS
        assert not [p for p in live if ep.start_ms < p["device_ts"] < after]


def test_late_batches_arrive_long_after_the_stop_ended() -> None:
    for day, ep in _episodes("late_batch"):
        backlog = [p for p in day.pings if ep.start_ms < p["device_ts"] <= ep.end_ms]
        assert backlog and _extent_m(backlog) < 60
        assert min(p["upload_at"] for p in backlog) >= ep.end_ms + 1.2 * N_MS


def test_frozen_gps_repeats_one_fix_while_claiming_to_move() -> None:
    for day, ep in _episodes("frozen"):
        assert ep.expected_alert == "frozen_gps"
        fixes = _fixes(day, ep.start_ms, ep.end_ms)
        assert len({(p["lat"], p["lon"]) for p in fixes}) == 1
        assert len(fixes) >= 5 and fixes[-1]["device_ts"] - fixes[0]["device_ts"] >= 20_000
        assert all(p["speed_mps"] >= 2.0 for p in fixes)


def test_pings_are_uploaded_in_order_and_unique() -> None:
    for day in days():
        uploads = [p["upload_at"] for p in day.pings]
        assert uploads == sorted(uploads)
        assert len({p["ping_id"] for p in day.pings}) == len(day.pings)
        assert all(p["upload_at"] >= p["device_ts"] for p in day.pings)


def test_area_speeds_vary_by_cell_and_by_hour() -> None:
    noon, rush = START + 12 * 3_600_000, START + 18 * 3_600_000
    grid = [(-23.55 + i * 0.02, -46.66 + j * 0.02) for i in range(4) for j in range(4)]
    at_noon = [area_speed_mps(lat, lon, noon) for lat, lon in grid]
    assert max(at_noon) / min(at_noon) > 1.5
    assert all(area_speed_mps(lat, lon, rush) < s for (lat, lon), s in zip(grid, at_noon, strict=True))


def test_a_fleet_pinned_to_an_hour_rides_alike_whenever_it_starts() -> None:
    def trips(start_ms: int) -> list[list[tuple[float, float]]]:
        config = replace(CONFIG, drivers=5, minutes=6, start_ms=start_ms, traffic_hour=12)
        return [[(p["lat"], p["lon"]) for p in day.pings] for day in simulate_deliveries(config)]

    assert trips(START + 8 * 3_600_000) == trips(START + 12 * 3_600_000)
    rush = replace(CONFIG, drivers=5, minutes=6, start_ms=START + 8 * 3_600_000)
    assert [[(p["lat"], p["lon"]) for p in d.pings] for d in simulate_deliveries(rush)] != trips(START)


def test_history_rides_before_the_run_without_deliveries() -> None:
    pings = history_pings(CONFIG, drivers=5, minutes=10)
    assert pings and all(CONFIG.start_ms - 600_000 <= p["device_ts"] < CONFIG.start_ms + 6000 for p in pings)
    assert all(p["driver_id"].startswith("dsimh-") for p in pings)


def test_the_simulated_city_keeps_the_hours_the_learned_speeds_are_bucketed_by() -> None:
    from simulator.model import LOCAL_OFFSET_MS as simulated
    from streams.deliveries.cell_speeds import LOCAL_OFFSET_MS as learned

    assert simulated == learned == -3 * 3_600_000
