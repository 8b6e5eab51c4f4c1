"""ETAs for the deliveries a driver carries, on each new fix, with the ETA core (eta.py). Pure.

On a fresh fix the driver's recent speed is updated; for each delivery in transit an estimate is made from
the blended speed (recent, and the learned speed of the fix's res-7 cell at this hour of week, which the
caller looks up). It is published when ``should_emit`` says so, and one ``late_risk`` alert per delivery is
raised when an estimate passes the promise plus the grace. At arrival, the first and the last ETA published
are compared with the actual arrival.
"""

from __future__ import annotations

from typing import Any

from streams.deliveries.eta import (
    EtaConfig,
    EtaEstimate,
    RecentSpeed,
    estimate_eta,
    is_late_risk,
    should_emit,
    update_recent_speed,
)
from streams.deliveries.stall import OpenAlert
from streams.deliveries.state import IN_TRANSIT, Delivery, DriverState
from streams.deliveries.tracker import alert_id, alert_record

ACTUAL = "actual"  # method of the EtaUpdate recording a delivery's real arrival


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


def on_fix(
    state: DriverState,
    driver_id: str,
    ping: dict[str, Any],
    cell_speed_mps: float | None,
    now: int,
    config: EtaConfig,
    horizon_ms: int,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Update the recent speed and return (EtaUpdate records, late_risk alerts) for a clean ping.

    A fix older than ``horizon_ms`` when processed (a late upload) only feeds the recent speed: an ETA from
    where the driver was long ago would mislead the customer and could page a dispatcher about the past.
    """
    ts = int(ping["device_ts"])
    speed, evidence, last_ts = state.recent
    fresh = last_ts is None or ts > last_ts
    recent = update_recent_speed(RecentSpeed(speed, evidence, last_ts), float(ping["step_m"]), ts, config)
    state.recent = [recent.speed_mps, recent.evidence_s, recent.last_ts]
    if not fresh or now - ts > horizon_ms:
        return [], []  # an out-of-order or long-delayed fix says nothing about where the driver is now
    updates, alerts = [], []
    for delivery in sorted(state.deliveries.values(), key=lambda d: d.delivery_id):
        if delivery.status not in IN_TRANSIT:
            continue
        estimate = estimate_eta(
            float(ping["lat"]),
            float(ping["lon"]),
            *delivery.dropoff,
            ts,
            recent.speed_mps if recent.evidence_s > 0 else None,
            cell_speed_mps,
            config,
            recent_evidence_s=recent.evidence_s,
        )
        last = None
        if delivery.eta is not None and delivery.eta_at is not None:
            last = EtaEstimate(delivery.eta, 0.0, 0.0, "", delivery.eta_at)
        if should_emit(last, estimate, config):
            delivery.eta, delivery.eta_at = estimate.eta_ms, estimate.computed_at
            if delivery.eta_first is None:
                delivery.eta_first = estimate.eta_ms
            updates.append(eta_record(driver_id, delivery, estimate))
        if not delivery.late_alerted and is_late_risk(estimate, delivery.promised_at, config):
            delivery.late_alerted = True
            started = estimate.computed_at
            opened = OpenAlert(
                alert_id("late_risk", f"{driver_id}/{delivery.delivery_id}", started),
                "late_risk",
                started,
                float(ping["lat"]),
                float(ping["lon"]),
                delivery.delivery_id,
            )
            state.alerts[f"late_risk:{delivery.delivery_id}"] = opened  # open until the delivery ends
            detail = f"ETA {estimate.eta_ms} passes the promise {delivery.promised_at} plus the grace"
            alerts.append(alert_record("late_risk", driver_id, opened, now, detail=detail))
    return updates, alerts


def on_arrival(driver_id: str, delivery: Delivery) -> tuple[dict[str, Any] | None, dict[str, float]]:
    """Return the EtaUpdate of the actual arrival and the signed errors (s) of the first and last ETA."""
    if delivery.arrived_at is None or delivery.eta is None or delivery.eta_first is None:
        return None, {}
    arrived = delivery.arrived_at
    actual = EtaEstimate(arrived, 0.0, 0.0, ACTUAL, arrived)
    errors = {"first": (arrived - delivery.eta_first) / 1000.0, "last": (arrived - delivery.eta) / 1000.0}
    return eta_record(driver_id, delivery, actual), errors
