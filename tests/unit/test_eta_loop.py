"""The offline ETA loop: the fleet cleaned and learned from as the worker would, the agent's step replayed."""

from __future__ import annotations

import math
import statistics

import pytest

from benches.eta_replay import clean, learn, replay_etas, score_offline
from simulator.deliveries import (
    DeliverySimConfig,
    area_speed_mps,
    history_pings,
    past_deliveries,
)
from streams.deliveries.cell_speeds import RIDE_KEY, dwell_key, hour_of_week
from streams.deliveries.eta import EtaConfig

FLEET = DeliverySimConfig(drivers=30, minutes=14, start_ms=1_795_020_000_000, seed=5)


def test_clean_gives_each_ping_the_fields_the_speeds_and_the_eta_read() -> None:
    pings = history_pings(FLEET, 5, 5)
    cleaned = clean(pings)
    assert 0.95 * len(pings) <= len(cleaned) <= len(pings)
    assert all({"h3_r7", "step_m", "derived_speed_mps", "late"} <= p.keys() for p in cleaned)


def test_learned_speeds_recover_the_simulated_speed_of_each_cell() -> None:
    pings = clean(history_pings(FLEET, 40, 20))
    speeds = learn(pings)
    ratios = []
    for ping in pings:
        found = speeds.get(f"{ping['h3_r7']:x}:{hour_of_week(ping['device_ts'])}")
        if found is not None and found.weight >= 50:
            ratios.append(found.speed_mps / area_speed_mps(ping["lat"], ping["lon"], ping["device_ts"]))
    assert len(ratios) > 1000
    # Riders keep their own pace (0.85 to 1.15) and GPS noise adds a little: the mean sits near 1.
    assert 0.95 < statistics.median(ratios) < 1.08


def test_the_replayed_agent_publishes_etas_that_are_scored_against_the_baseline() -> None:
    score, days = score_offline(FLEET, history_drivers=40, history_minutes=20)
    arrived = sum(1 for day in days for d in day.deliveries if d.arrived_at is not None)
    assert arrived >= 10 and score.updates >= 2 * arrived
    assert math.isfinite(score.mae_s) and math.isfinite(score.baseline_mae_s)
    assert 30 < score.baseline_mae_s < 400 and 30 < score.mae_s < 400


def test_past_deliveries_are_other_drivers_delivering_in_the_minutes_before_the_fleet() -> None:
    past = past_deliveries(FLEET, 12, 10)
    assert len(past) == 12 and all(day.driver_id.startswith("dsimp-") for day in past)
    times = [p["device_ts"] for day in past for p in day.pings]
    # The day ends when the fleet starts (its last tick may run a few seconds over, as every day's does).
    assert FLEET.start_ms - 10 * 60_000 <= min(times) and max(times) < FLEET.start_ms + 12_000
    assert not {day.driver_id for day in past} & {f"dsim-{i:05d}" for i in range(FLEET.drivers)}


def test_a_replayed_past_teaches_its_riding_its_stops_in_transit_and_its_arrivals() -> None:
    speeds = learn(clean(history_pings(FLEET, 40, 20)))
    before = dict(speeds)
    taught: list[tuple[str, float, int]] = []
    replay_etas(past_deliveries(FLEET, 40, 14), speeds, EtaConfig(), taught)
    keys = {key for key, _, _ in taught}
    assert dwell_key(60) in keys, "stops in transit that ended teach how long they lasted"
    assert RIDE_KEY in keys, "arrivals teach how long riding took against the ETAs"
    by_direction = {key for key in keys if key.startswith(f"{RIDE_KEY}:")}
    assert len(by_direction) > 3, "and how long it took by the direction of the drop-off"
    dwells = {dwell_key(t) for t in EtaConfig().dwell_thresholds_s}
    assert len(keys - {RIDE_KEY} - by_direction - dwells) > 10, "cells"
    for key in keys:
        samples = [value for k, value, _ in taught if k == key]
        if key in before:  # a cell the history taught: the past's riding adds to it (decay is slight)
            assert speeds[key].weight == pytest.approx(before[key].weight + len(samples), rel=1e-2)
        else:
            assert speeds[key].weight == pytest.approx(len(samples), rel=1e-3)
            assert speeds[key].speed_mps == pytest.approx(statistics.fmean(samples), rel=1e-3)
    assert all(value > 0 and FLEET.start_ms - 14 * 60_000 < ts for _, value, ts in taught)
    ratios = [value for key, value, _ in taught if key == RIDE_KEY]
    assert all(0.5 <= r <= 1.6 for r in ratios) and 0.7 < statistics.median(ratios) < 1.3
