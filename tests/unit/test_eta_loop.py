"""The offline ETA loop: the fleet cleaned and learned from as the worker would, the agent's step replayed."""

from __future__ import annotations

import math
import statistics

from connectors.simulator.deliveries import DeliverySimConfig, area_speed_mps, history_pings
from connectors.simulator.eta_loop import clean, learn, score_offline
from streams.deliveries.cell_speeds import hour_of_week

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
