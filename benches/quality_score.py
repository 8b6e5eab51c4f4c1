"""Score what the pipeline said (alerts, ETAs) against the delivery simulator's ground truth. Pure: no I/O.

Times: the simulator is played in real time, so event time and the wall clock are one clock. Detection
delay is ``detected_at`` (when the pipeline raised the alert) minus the episode's true start (the first fix
of the stop); both are read on that clock.

ETA: each update published on ``deliveries.eta`` for an in-transit delivery that arrived is compared with
the actual arrival. The baseline is computed at the same moments from the driver's newest fix at that
moment: straight-line distance at one constant speed, the run's own average straight-line speed over the
en-route legs (tuned on the answer, so generous to the baseline).

ETA as held: every ``HELD_STEP_MS`` from the pickup to the arrival, the newest ETA published by then is what
the customer holds; it and the baseline at that moment are compared with the arrival. Each minute in transit
counts the same, however often the ETA moved in it: the published updates crowd where the ETA changes (a stop
that goes on, a jam), where both are furthest from the truth.
"""

from __future__ import annotations

import bisect
import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from simulator.deliveries import DriverDay, Episode, SimDelivery
from streams.deliveries.eta import straight_line_eta
from streams.pings.rules import haversine_m

# How far before a true start an alert's started_at may lie and still be that episode (window step, noise).
START_SLACK_MS = 90_000
# How often the ETA a customer holds is read, in transit.
HELD_STEP_MS = 30_000


@dataclass
class KindScore:
    """Precision, recall and delays for one alert kind."""

    expected: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    duplicates: int = 0
    delays_s: list[float] = field(default_factory=list)

    @property
    def precision(self) -> float:
        """Share of distinct alerts that matched a true episode (1 when there were none)."""
        return self.true_alerts / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        """Share of expected episodes that were alerted (1 when none were expected)."""
        return self.detected / self.expected if self.expected else 1.0

    @property
    def median_delay_s(self) -> float:
        """Median detection delay in seconds (NaN when nothing was detected)."""
        return statistics.median(self.delays_s) if self.delays_s else float("nan")


@dataclass
class QualityReport:
    """Everything the quality benchmark measures."""

    kinds: dict[str, KindScore]
    late_batch_alerts: int
    resent_records: int
    eta_updates: int
    eta_mae_s: float
    baseline_mae_s: float
    baseline_speed_mps: float
    held_moments: int = 0
    held_mae_s: float = float("nan")
    baseline_held_mae_s: float = float("nan")
    false_alerts: list[dict[str, Any]] = field(default_factory=list)
    missed: list[Episode] = field(default_factory=list)

    @property
    def duplicates(self) -> int:
        """Extra distinct alerts for an episode already alerted, over every kind."""
        return sum(k.duplicates for k in self.kinds.values())

    @property
    def eta_improvement(self) -> float:
        """How much lower the pipeline's ETA error is than the baseline's (0.3 = 30% lower)."""
        return 1.0 - self.eta_mae_s / self.baseline_mae_s if self.baseline_mae_s else float("nan")

    @property
    def held_improvement(self) -> float:
        """How much lower the error of the ETA held in transit is than the baseline's, moment by moment."""
        return 1.0 - self.held_mae_s / self.baseline_held_mae_s if self.baseline_held_mae_s else float("nan")


def _matches(alert: dict[str, Any], ep: Episode, after_ms: int) -> bool:
    return (
        alert["driver_id"] == ep.driver_id
        and alert.get("delivery_id") == ep.delivery_id
        and ep.start_ms - START_SLACK_MS <= alert["started_at"] <= ep.end_ms + after_ms
    )


def score_alerts(
    days: Iterable[DriverDay],
    alerts: list[dict[str, Any]],
    offline_ms: int,
    *,
    stall_ms: int,
    end_ms: int,
) -> tuple[dict[str, KindScore], int, int, list[dict[str, Any]], list[Episode]]:
    """Match alerts to episodes; return per-kind scores, late-batch alerts, resent records, false, missed.

    When the run ends every phone falls silent; alerts for silences and stops that began too close to the
    end for any complete episode to have raised them are artifacts of the ending and left out.
    """
    days = list(days)
    cutoff = {"stall": end_ms - stall_ms, "offline": end_ms - offline_ms, "frozen_gps": end_ms}
    drivers = {d.driver_id for d in days}
    episodes = [e for d in days for e in d.episodes]
    seen: set[str] = set()
    distinct: list[dict[str, Any]] = []
    for alert in alerts:
        if alert["driver_id"] in drivers and alert["alert_id"] not in seen:
            seen.add(alert["alert_id"])
            distinct.append(alert)
    resent = sum(1 for a in alerts if a["driver_id"] in drivers) - len(distinct)
    kinds = {kind: KindScore() for kind in ("stall", "offline", "frozen_gps")}
    by_episode: dict[int, list[dict[str, Any]]] = defaultdict(list)
    false_alerts: list[dict[str, Any]] = []
    late_batch = 0
    for alert in distinct:
        kind = alert["kind"]
        if kind not in kinds or alert["started_at"] > cutoff[kind]:
            continue
        score = kinds[kind]
        score.alerts += 1
        # An offline alert starts at the last fix before the silence: it may be well before the episode ends.
        after = offline_ms if kind == "offline" else 0
        match = next(
            (i for i, e in enumerate(episodes) if e.expected_alert == kind and _matches(alert, e, after)),
            None,
        )
        if kind == "stall" and any(e.kind == "late_batch" and _matches(alert, e, 0) for e in episodes):
            late_batch += 1
        if match is None:
            false_alerts.append(alert)
            continue
        by_episode[match].append(alert)
    missed: list[Episode] = []
    for i, ep in enumerate(episodes):
        if ep.expected_alert is None or not ep.complete:
            continue
        score = kinds[ep.expected_alert]
        score.expected += 1
        hits = sorted(by_episode.get(i, []), key=lambda a: a["detected_at"])
        if not hits:
            missed.append(ep)
            continue
        score.detected += 1
        score.true_alerts += 1
        score.duplicates += len(hits) - 1
        score.delays_s.append((hits[0]["detected_at"] - ep.start_ms) / 1000)
    for i, hits in by_episode.items():
        if not episodes[i].complete:
            # An episode cut short by the end of the run: its alerts are neither right nor wrong.
            kinds[hits[0]["kind"]].alerts -= len(hits)
    return kinds, late_batch, resent, false_alerts, missed


def baseline_speed(days: Iterable[DriverDay]) -> float:
    """Return the run's average straight-line speed from pickup to arrival over arrived deliveries."""
    distance = seconds = 0.0
    for day in days:
        picked = {e["delivery_id"]: e["ts"] for e in day.events if e["type"] == "picked_up"}
        for d in day.deliveries:
            if d.arrived_at is not None and d.delivery_id in picked:
                distance += haversine_m(*d.pickup, *d.dropoff)
                seconds += (d.arrived_at - picked[d.delivery_id]) / 1000
    return distance / seconds if seconds else 6.0


Fixes = dict[str, tuple[list[int], list[dict[str, Any]]]]


def _fixes(days: list[DriverDay]) -> Fixes:
    """Return each driver's fixes in event-time order, with their times for bisection."""
    fixes: Fixes = {}
    for day in days:
        ordered = sorted(day.pings, key=lambda p: p["device_ts"])
        fixes[day.driver_id] = ([p["device_ts"] for p in ordered], ordered)
    return fixes


def _picked(days: list[DriverDay]) -> dict[str, int]:
    """Return when each delivery was picked up."""
    return {e["delivery_id"]: e["ts"] for day in days for e in day.events if e["type"] == "picked_up"}


def _baseline_error_s(fixes: Fixes, driver_id: str, d: SimDelivery, at: int, speed: float) -> float | None:
    """Return the straight-line baseline's error (s) from the driver's newest fix at ``at``, or None if the
    driver had no fix yet."""
    times, ordered = fixes[driver_id]
    i = bisect.bisect_right(times, at) - 1
    if i < 0 or d.arrived_at is None:
        return None
    fix = ordered[i]
    base = straight_line_eta(fix["lat"], fix["lon"], *d.dropoff, at, speed)
    return abs(d.arrived_at - base.eta_ms) / 1000


def score_etas(days: Iterable[DriverDay], etas: list[dict[str, Any]]) -> tuple[int, float, float, float]:
    """Return (updates scored, pipeline MAE s, baseline MAE s, baseline speed) over in-transit updates."""
    days = list(days)
    speed = baseline_speed(days)
    deliveries = {d.delivery_id: (day, d) for day in days for d in day.deliveries}
    fixes, picked = _fixes(days), _picked(days)
    ours: list[float] = []
    naive: list[float] = []
    for update in etas:
        found = deliveries.get(update["delivery_id"])
        if update.get("method") == "actual":
            continue  # the arrival itself, recorded by the tracking agent: not an estimate
        if found is None:
            continue
        day, d = found
        at = update["computed_at"]
        if (
            d.arrived_at is None
            or d.delivery_id not in picked
            or not picked[d.delivery_id] <= at < d.arrived_at
        ):
            continue
        base_s = _baseline_error_s(fixes, day.driver_id, d, at, speed)
        if base_s is None:
            continue
        ours.append(abs(d.arrived_at - update["eta"]) / 1000)
        naive.append(base_s)
    if not ours:
        return 0, float("nan"), float("nan"), speed
    return len(ours), statistics.fmean(ours), statistics.fmean(naive), speed


def score_held(
    days: Iterable[DriverDay], etas: list[dict[str, Any]], step_ms: int = HELD_STEP_MS
) -> tuple[int, float, float]:
    """Return (moments scored, MAE s of the ETA held, baseline MAE s) every ``step_ms`` in transit.

    A moment counts once the delivery has had an ETA published and the driver a fix.
    """
    days = list(days)
    speed = baseline_speed(days)
    fixes, picked = _fixes(days), _picked(days)
    published: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for update in etas:
        if update.get("method") != "actual":
            published[update["delivery_id"]].append(update)
    ours: list[float] = []
    naive: list[float] = []
    for day in days:
        for d in day.deliveries:
            if d.arrived_at is None or d.delivery_id not in picked:
                continue
            held = sorted(published.get(d.delivery_id, []), key=lambda u: u["computed_at"])
            held_at = [u["computed_at"] for u in held]
            for at in range(picked[d.delivery_id] + step_ms, d.arrived_at, step_ms):
                j = bisect.bisect_right(held_at, at) - 1
                base_s = _baseline_error_s(fixes, day.driver_id, d, at, speed) if j >= 0 else None
                if base_s is None:
                    continue
                ours.append(abs(d.arrived_at - held[j]["eta"]) / 1000)
                naive.append(base_s)
    if not ours:
        return 0, float("nan"), float("nan")
    return len(ours), statistics.fmean(ours), statistics.fmean(naive)


def score_run(
    days: list[DriverDay],
    alerts: list[dict[str, Any]],
    etas: list[dict[str, Any]],
    *,
    offline_ms: int,
    stall_ms: int,
    end_ms: int,
) -> QualityReport:
    """Score a whole run that ended at ``end_ms``."""
    kinds, late_batch, resent, false_alerts, missed = score_alerts(
        days, alerts, offline_ms, stall_ms=stall_ms, end_ms=end_ms
    )
    n, ours, naive, speed = score_etas(days, etas)
    moments, held, naive_held = score_held(days, etas)
    return QualityReport(
        kinds, late_batch, resent, n, ours, naive, speed, moments, held, naive_held, false_alerts, missed
    )
