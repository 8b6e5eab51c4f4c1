"""The ETA core judged offline: a simulated fleet, cleaned and learned from as the worker would, no Kafka.

The fleet's pings go through the clean rules (``step_m``, ``derived_speed_mps``, ``h3_r7``) in upload order;
the history's clean pings teach the cell speeds (``cell_speeds.sample_of`` / ``fold``); the fleet's are
replayed through the ETA core (``score.replay_etas``) and scored against the truth with the quality
benchmark's scorer. A model change is judged in seconds instead of a real-time run of twenty minutes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from benches.quality_score import score_etas
from simulator.deliveries import (
    DeliverySimConfig,
    DriverDay,
    history_pings,
    past_deliveries,
    simulate_deliveries,
)
from streams.deliveries import estimates
from streams.deliveries.cell_speeds import (
    CellSpeed,
    SpeedConfig,
    dwell_key,
    fold,
    lookup,
    lookup_fleet,
    ride_key,
    sample_of,
)
from streams.deliveries.estimates import Learned
from streams.deliveries.eta import EtaConfig
from streams.deliveries.stall import StallConfig
from streams.deliveries.state import Delivery, DriverState, apply_event
from streams.pings.rules import RuleConfig, evaluate
from streams.pings.state import DriverPingState

# The tracking agent's horizon for an ETA from a delayed fix.
HORIZON_MS = StallConfig().horizon_ms
SPEEDS = SpeedConfig()


def clean(pings: Iterable[dict[str, Any]], rules: RuleConfig | None = None) -> list[dict[str, Any]]:
    """Run pings through the clean rules in upload order, as the clean stage would; return the accepted."""
    rules = rules or RuleConfig()
    states: dict[str, DriverPingState] = {}
    accepted: list[dict[str, Any]] = []
    for ping in sorted(pings, key=lambda p: p["upload_at"]):
        received = int(ping["upload_at"])
        state = states.setdefault(ping["driver_id"], DriverPingState())
        result = evaluate({**ping, "received_ts": received}, state, rules, received)
        if isinstance(result, dict):
            accepted.append(result)
    return accepted


def learn(clean_pings: Iterable[dict[str, Any]], config: SpeedConfig | None = None) -> dict[str, CellSpeed]:
    """Fold clean pings into learned speeds per cell and hour of week, as the speeds agents do."""
    config = config or SpeedConfig()
    speeds: dict[str, CellSpeed] = {}
    for ping in clean_pings:
        learn_one(speeds, ping, config)
    return speeds


def learn_one(
    speeds: dict[str, CellSpeed], ping: dict[str, Any], config: SpeedConfig
) -> tuple[str, float, int] | None:
    """Fold one clean ping into the learned speeds, as the speeds agents do; return the sample, if any."""
    sample = sample_of(ping, config, lambda cell, ts: lookup(speeds, cell, ts, config))
    if sample is not None:
        key, speed, ts = sample
        speeds[key] = fold(speeds.get(key), speed, 1, ts, config)
    return sample


def replay_etas(
    days: Iterable[DriverDay],
    speeds: dict[str, CellSpeed],
    config: EtaConfig,
    taught: list[tuple[str, float, int]] | None = None,
) -> list[dict[str, Any]]:
    """Run the tracking agent's ETA step over the fleet's day as it arrives; return what it would publish.

    Every driver's cleaned pings and delivery events are taken together in upload order (the wall clock,
    as when the fleet is played in real time) through the same pure steps the agent runs
    (``state.apply_event``, ``estimates.on_fix``), starting from the learned ``speeds``; what the fleet
    teaches on the way (the cells' riding speeds, how long stops in transit last, how long riding took
    against the ETAs' riding time at each arrival) is folded in as it happens, as the worker does, and
    appended to ``taught`` as (learned key, sample, when) if given.
    """
    learned = Learned(
        lambda cell, ts: lookup(speeds, cell, ts, SPEEDS),
        lambda b: lookup_fleet(speeds, dwell_key(b), SPEEDS),
        lambda direction: lookup_fleet(speeds, ride_key(direction), SPEEDS),
    )

    def teach(key: str, value: float, now: int) -> None:
        speeds[key] = fold(speeds.get(key), value, 1, now, SPEEDS)
        if taught is not None:
            taught.append((key, value, now))

    records: list[tuple[int, int, str, dict[str, Any]]] = []
    for day in days:
        records += [(e["upload_at"], 0, day.driver_id, e) for e in day.events]
        records += [(p["upload_at"], 1, day.driver_id, p) for p in clean(day.pings)]
    records.sort(key=lambda r: (r[0], r[1]))
    states: dict[str, DriverState] = {}
    published: list[dict[str, Any]] = []
    for now, is_ping, driver, record in records:
        state = states.setdefault(driver, DriverState())
        if not is_ping:
            applied = apply_event(state, record)
            if isinstance(applied, Delivery) and estimates.first_arrival(applied):
                for direction, ratio in estimates.ride_samples(state, applied, config):
                    teach(ride_key(direction), ratio, now)
            continue
        updates, _, samples = estimates.on_fix(state, driver, record, learned, now, config, HORIZON_MS)
        sample = learn_one(speeds, record, SPEEDS)  # the speeds agents learn from every clean ping too
        if sample is not None and taught is not None:
            taught.append(sample)
        for threshold, seconds in samples:
            teach(dwell_key(threshold), seconds, now)
        published += updates
    return published


@dataclass(frozen=True)
class OfflineScore:
    """The replayed ETA core against the straight line, over one simulated fleet."""

    updates: int
    mae_s: float
    baseline_mae_s: float
    baseline_speed_mps: float

    @property
    def improvement(self) -> float:
        """Return how much lower our error is than the baseline's (0.3 = 30% lower)."""
        return 1.0 - self.mae_s / self.baseline_mae_s


def score_offline(
    fleet: DeliverySimConfig,
    eta: EtaConfig | None = None,
    history_drivers: int = 200,
    history_minutes: float = 45.0,
    past_minutes: float = 0.0,
) -> tuple[OfflineScore, list[DriverDay]]:
    """Simulate a fleet and its history, learn, replay the ETA core, and score it.

    With ``past_minutes``, the history's drivers also deliver in the minutes before the fleet, and the ETA
    core learns from their stops in transit first, as the quality benchmark's worker does.
    """
    speeds = learn(clean(history_pings(fleet, history_drivers, history_minutes)))
    if past_minutes > 0:
        replay_etas(past_deliveries(fleet, history_drivers, past_minutes), speeds, eta or EtaConfig())
    days = simulate_deliveries(fleet)
    published = replay_etas(days, speeds, eta or EtaConfig())
    return OfflineScore(*score_etas(days, published)), days
