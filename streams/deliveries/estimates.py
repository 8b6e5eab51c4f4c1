"""ETAs for the deliveries a driver carries, on each new fix, with the ETA core (eta.py). Pure.

On a fresh fix the driver's current stop (where they stay, or crawl in a jam, since when), recent speed and
pace against the cells are updated; for each delivery in transit the estimate is the learned travel time of
the cells along the way to the drop-off, times the detour factor and the calibration the fleet's arrivals
taught for the direction of the drop-off from the rider, over the rider's pace, plus what is
left of the stop the driver is in, as long stops in transit went on for the fleet (``eta.expected_dwell_s``).
Where no cell on the way has been learned, the blend of the recent speed and the default speaks instead. A
stop in transit that ends becomes dwell samples the caller teaches the fleet. An estimate is published when
``should_emit`` says so, and one ``late_risk`` alert per delivery is raised when an estimate passes the
promise plus the grace. At arrival, the first and the last ETA published are compared with the actual
arrival, and the riding each foresaw with the riding done (``ride_samples``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.deliveries.cell_speeds import SpeedConfig, sample_of, time_along
from streams.deliveries.eta import (
    EtaConfig,
    EtaEstimate,
    EtaMethod,
    Pace,
    RecentSpeed,
    Stop,
    direction_class,
    dwell_samples,
    estimate_along,
    estimate_eta,
    expected_dwell_s,
    is_crawling,
    is_late_risk,
    pace_factor,
    ride_ratio,
    ride_ratios,
    should_emit,
    update_pace,
    update_recent_speed,
    update_stop,
)
from streams.deliveries.stall import OpenAlert
from streams.deliveries.state import IN_TRANSIT, Delivery, DriverState
from streams.deliveries.tracker import alert_id, alert_record

ACTUAL = "actual"  # method of the EtaUpdate recording a delivery's real arrival
# ETAs whose riding time a delivery keeps for the calibration at arrival: the first and the newest.
MAX_RIDES = 8
SPEEDS = SpeedConfig()  # which steps are riding: the same as for the learned speeds


def eta_record(driver_id: str, delivery: Delivery, estimate: EtaEstimate) -> dict[str, Any]:
    """Return an EtaUpdate record (schemas/eta_update.avsc)."""
    return {
        "delivery_id": delivery.delivery_id,
        "driver_id": driver_id,
        "eta": estimate.eta_ms,
        "remaining_m": estimate.remaining_m,
        "speed_mps": estimate.speed_mps,
        "method": estimate.method,
        "computed_at": estimate.computed_at,
        "promised_at": delivery.promised_at,
    }


def _no_dwell(threshold_s: int) -> float | None:
    return None


def _no_ratio(direction: int | None) -> float | None:
    return None


@dataclass(frozen=True)
class Learned:
    """What the fleet has taught: a cell's speed at an instant's hour of week, how long stops in transit
    went on beyond each dwell threshold, and how long riding took against the ETAs' riding time for a class
    of the drop-off's direction (``eta.direction_class``) or the whole fleet (None). Each answers None while
    not known yet."""

    cell_speed: Callable[[int, int], float | None]
    dwell: Callable[[int], float | None] = _no_dwell
    ride_ratio: Callable[[int | None], float | None] = _no_ratio


def on_fix(
    state: DriverState,
    driver_id: str,
    ping: dict[str, Any],
    learned: Learned,
    now: int,
    config: EtaConfig,
    horizon_ms: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[tuple[int, float]]]:
    """Update the stop and recent speed; return (EtaUpdate records, late_risk alerts, dwell samples).

    Dwell samples, (threshold s, seconds beyond it), describe a stop in transit that just ended; the caller
    teaches them to the fleet.
    A fix older than ``horizon_ms`` when processed (a late upload) only feeds the recent speed: an ETA from
    where the driver was long ago would mislead the customer and could page a dispatcher about the past.
    """
    ts = int(ping["device_ts"])
    speed, evidence, last_ts = state.recent
    fresh = last_ts is None or ts > last_ts
    recent = update_recent_speed(RecentSpeed(speed, evidence, last_ts), float(ping["step_m"]), ts, config)
    state.recent = [recent.speed_mps, recent.evidence_s, recent.last_ts]
    lat, lon = float(ping["lat"]), float(ping["lon"])
    cell_speed = learned.cell_speed
    if not fresh:
        return [], [], []  # an out-of-order fix says nothing about where the driver is now
    stop = Stop(*state.stop) if state.stop else None
    carrying = state.in_transit() is not None
    phone_mps = ping.get("speed_mps")
    moving_mps = phone_mps if phone_mps is not None else ping.get("derived_speed_mps")
    here_mps = cell_speed(int(ping["h3_r7"]), ts)
    crawling = is_crawling(moving_mps, here_mps, config)
    state.pace = _fold_pace(state.pace, ping, here_mps, ts - last_ts if last_ts is not None else 0, config)
    stop, ended_s = update_stop(stop, lat, lon, ts, phone_mps, carrying, config, crawling=crawling)
    state.stop = [stop.lat, stop.lon, stop.since_ts, stop.in_transit_since]
    samples = dwell_samples(ended_s, config) if ended_s is not None else []
    if samples and ended_s is not None:  # a hold-up long enough to be a wait: the dwell speaks for it
        for delivery in state.deliveries.values():
            if delivery.status in IN_TRANSIT:
                delivery.held_ms += round(ended_s * 1000)
    if now - ts > horizon_ms:
        return [], [], samples  # a long-delayed fix: an ETA from where the driver was long ago misleads
    dwell_s = expected_dwell_s(stop, ts, learned.dwell, config)
    fleet_calibration = learned.ride_ratio(None) or 1.0
    pace = pace_factor(Pace(*state.pace), config)
    updates, alerts = [], []
    for delivery in sorted(state.deliveries.values(), key=lambda d: d.delivery_id):
        if delivery.status not in IN_TRANSIT:
            continue
        route_s = time_along(cell_speed, lat, lon, *delivery.dropoff, ts)
        direction = direction_class(lat, lon, *delivery.dropoff, config)
        calibration = learned.ride_ratio(direction) or fleet_calibration
        if route_s is not None:
            estimate = estimate_along(
                lat, lon, *delivery.dropoff, ts, route_s, config, dwell_s, calibration, pace
            )
        else:
            recent_mps = recent.speed_mps if recent.evidence_s > 0 else None
            estimate = estimate_eta(
                lat, lon, *delivery.dropoff, ts, recent_mps, None, config, recent_evidence_s=recent.evidence_s
            )
        last = None
        if delivery.eta is not None and delivery.eta_at is not None:
            last = EtaEstimate(delivery.eta, 0.0, 0.0, "", delivery.eta_at)
        if should_emit(last, estimate, config):
            delivery.eta, delivery.eta_at = estimate.eta_ms, estimate.computed_at
            if delivery.eta_first is None:
                delivery.eta_first = estimate.eta_ms
            if estimate.method in (EtaMethod.CELL, EtaMethod.DWELL):
                # The riding time as the cells foresaw it, before the calibration: what arrivals calibrate.
                riding_ms = round((estimate.eta_ms - ts - dwell_s * 1000) / calibration)
                held = delivery.held_ms + _held_so_far(stop, ts, config)
                delivery.rides.append([ts, riding_ms, held, direction])
                del delivery.rides[1 : -MAX_RIDES + 1]  # the first and the newest
            updates.append(eta_record(driver_id, delivery, estimate))
        if not delivery.late_alerted and is_late_risk(estimate, delivery.promised_at, config):
            delivery.late_alerted = True
            started = estimate.computed_at
            opened = OpenAlert(
                alert_id("late_risk", f"{driver_id}/{delivery.delivery_id}", started),
                "late_risk",
                started,
                lat,
                lon,
                delivery.delivery_id,
            )
            state.alerts[f"late_risk:{delivery.delivery_id}"] = opened  # open until the delivery ends
            detail = f"ETA {estimate.eta_ms} passes the promise {delivery.promised_at} plus the grace"
            alerts.append(alert_record("late_risk", driver_id, opened, now, detail=detail))
    return updates, alerts, samples


def _fold_pace(
    pace: list[float], ping: dict[str, Any], cell_mps: float | None, dt_ms: int, config: EtaConfig
) -> list[float]:
    """Fold a fresh fix's step into the rider's pace, if the step is riding as the learned speeds count it
    (``cell_speeds.sample_of``: moving by the fixes and by the phone, not crawling against the cell)."""
    riding = sample_of(ping, SPEEDS, lambda cell, ts: cell_mps)
    if riding is None or not cell_mps:
        return pace
    folded = update_pace(Pace(*pace), riding[1], cell_mps, dt_ms / 1000.0, config)
    return [folded.ratio, folded.evidence_s]


def _held_so_far(stop: Stop | None, ts: int, config: EtaConfig) -> int:
    """Return how long (ms) the driver has been held up in transit at ``ts``, once it counts as a wait: that
    part of the hold-up, added to ``held_ms`` when it ends, lies before an ETA made now."""
    if stop is None or stop.in_transit_since is None:
        return 0
    elapsed = ts - stop.in_transit_since
    return elapsed if elapsed >= min(config.dwell_thresholds_s) * 1000 else 0


def first_arrival(delivery: Delivery) -> bool:
    """Say whether the event just applied is the delivery's first arrived or delivered event."""
    return delivery.status in ("arrived", "delivered") and delivery.updated_at == delivery.arrived_at


def ride_samples(state: DriverState, delivery: Delivery, config: EtaConfig) -> list[tuple[int | None, float]]:
    """Return how long the delivery's riding took against what its ETAs foresaw, on its first arrival: for
    the whole fleet (direction class None) and after each ETA, for the class of direction it was made in.

    A hold-up still going on at the door (a customer slow to come down before "arrived" is tapped) is a
    wait, not riding, for as long as fixes showed it.
    """
    if delivery.arrived_at is None:
        return []
    stop = Stop(*state.stop) if state.stop else None
    seen_until = state.recent[2]  # the newest fix: a silence before the arrival is not a wait seen
    waiting = _held_so_far(stop, min(delivery.arrived_at, seen_until or 0), config)
    held = delivery.held_ms + waiting
    fleet = ride_ratio(delivery.rides, delivery.arrived_at, held, config)
    if fleet is None:
        return []  # a hold-up the phone never showed: no ETA of this delivery teaches riding
    by_direction = ride_ratios(delivery.rides, delivery.arrived_at, held, config)
    return [(None, fleet), *by_direction]


def on_arrival(driver_id: str, delivery: Delivery) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """Return the EtaUpdate of the actual arrival and the signed errors (s) of the first and last ETA."""
    if delivery.arrived_at is None or delivery.eta is None or delivery.eta_first is None:
        return None, {}
    arrived = delivery.arrived_at
    actual = EtaEstimate(arrived, 0.0, 0.0, ACTUAL, arrived)
    errors = {"first": (arrived - delivery.eta_first) / 1000.0, "last": (arrived - delivery.eta) / 1000.0}
    return eta_record(driver_id, delivery, actual), errors
