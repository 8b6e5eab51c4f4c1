"""What a ping, a delivery event or a tick of the clock does to a driver's state, and the alerts it raises.

Pure: every output depends only on the driver's state, the input and the ``now`` passed in, so replaying an
input from the same state gives the same alerts with the same ids. Alert ids are derived from the driver,
the kind and when the condition began, so an episode has one id however often it is seen.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import h3
from shapely.geometry.base import BaseGeometry

from streams.deliveries import stall
from streams.deliveries.stall import OpenAlert, StallConfig
from streams.deliveries.state import (
    TERMINAL,
    Delivery,
    DriverState,
    LastFix,
    Reason,
    Rejection,
    Status,
    apply_event,
)

RESOLUTION = {"stall": "stall_resolved", "offline": "offline_resolved"}
MAX_TS_MS = 253_402_300_799_999  # the last millisecond of year 9999, the last a datetime holds
_MEASURES = ("step_m", "accuracy_m", "speed_mps", "derived_speed_mps")


@dataclass(frozen=True)
class TrackerConfig:
    """The movement rules and the depots (polygons where a driver may wait)."""

    stall: StallConfig = StallConfig()
    depots: Sequence[BaseGeometry] = field(default_factory=tuple)
    # Fingerprints of the keys that post events only as a partner (state.check_event scopes them).
    partners: frozenset[str] = frozenset()
    # An event time further ahead of the processing time than this, or older than the horizon, is refused.
    max_future_ms: int = 120_000
    horizon_ms: int = 24 * 3_600_000
    # An assignment its driver has neither accepted nor started after this long alerts dispatch (0: never).
    accept_timeout_ms: int = 180_000


def alert_id(kind: str, driver_id: str, started_at: int) -> str:
    """Return the deterministic id of an alert: same driver, kind and start, same id."""
    digest = hashlib.blake2b(f"{driver_id}\x00{kind}\x00{started_at}".encode(), digest_size=10).hexdigest()
    return f"{kind}-{digest}"


def alert_record(
    kind: str,
    driver_id: str,
    opened: OpenAlert,
    detected_at: int,
    *,
    severity: str = "warning",
    detail: str = "",
) -> dict[str, Any]:
    """Return an Alert record (schemas/alert.avsc) for an open or resolved alert."""
    resolved = kind != opened.kind
    return {
        "alert_id": f"{opened.alert_id}-resolved" if resolved else opened.alert_id,
        "kind": kind,
        "driver_id": driver_id,
        "delivery_id": opened.delivery_id,
        "started_at": opened.started_at,
        "detected_at": detected_at,
        "lat": opened.lat,
        "lon": opened.lon,
        "h3_r9": int(h3.latlng_to_cell(opened.lat, opened.lon, 9), 16),
        "severity": "info" if resolved else severity,
        "detail": detail,
    }


def _open(
    state: DriverState, kind: str, driver_id: str, started_at: int, where: tuple[float, float], now: int
) -> dict[str, Any]:
    carried = state.in_transit() or next(iter(state.deliveries.values()), None)
    opened = OpenAlert(
        alert_id(kind, driver_id, started_at),
        kind,
        started_at,
        where[0],
        where[1],
        carried.delivery_id if carried else None,
    )
    state.alerts[kind] = opened
    return alert_record(kind, driver_id, opened, now)


def _resolve(state: DriverState, kind: str, driver_id: str, now: int, detail: str) -> dict[str, Any]:
    opened = state.alerts.pop(kind)
    return alert_record(RESOLUTION[kind], driver_id, opened, now, detail=detail)


def geofences(state: DriverState, config: TrackerConfig) -> list[BaseGeometry]:
    """Return the places the driver may stand still: pickups and dropoffs of its deliveries, and depots."""
    radius = config.stall.geofence_m
    fences = list(config.depots)
    for delivery in state.deliveries.values():
        fences.append(stall.circle(*delivery.pickup, radius))
        fences.append(stall.circle(*delivery.dropoff, radius))
    return fences


def _judge(
    state: DriverState, driver_id: str, closed: list[stall.Extent], now: int, config: TrackerConfig
) -> list[dict[str, Any]]:
    """Judge closed windows in order: extend or end the current stop, raise a stall when it qualifies."""
    rules, movement, alerts = config.stall, state.movement, []
    for extent in closed:
        carried = state.in_transit()
        qualifies = (
            carried is not None
            and extent.start >= max(movement.moved_at, carried.picked_up_at or 0)
            and stall.is_still(extent, rules)
            and not stall.in_geofence(*extent.center(), geofences(state, config))
        )
        if not qualifies:
            # The stop's clock starts only once the driver stands still in transit, outside every geofence.
            movement.still_since = None
            continue
        if movement.still_since is None:
            movement.still_since = extent.first_ts
        if "stall" in state.alerts:
            continue
        if now - (extent.start + rules.window_ms) > rules.horizon_ms:
            continue  # judged long after it closed: a backlog from an old episode never pages anyone
        alerts.append(_open(state, "stall", driver_id, movement.still_since, extent.center(), now))
    return alerts


def ping_fault(ping: Mapping[str, Any]) -> str | None:
    """Return why a clean ping cannot be applied, or None if it can.

    ``clean_pings`` writes only fixes on the globe, finite non-negative measures and datable times, but a
    record on the topic may come from elsewhere; an infinite latitude made ``haversine_m`` raise.
    """
    lat, lon = ping["lat"], ping["lon"]
    if not (math.isfinite(lat) and math.isfinite(lon) and -90 <= lat <= 90 and -180 <= lon <= 180):
        return f"coordinates ({lat}, {lon}) are not on the globe"
    if not 0 <= ping["device_ts"] <= MAX_TS_MS:
        return f"device_ts {ping['device_ts']} is not a time"
    for name in _MEASURES:
        value = ping.get(name)
        if value is not None and not (math.isfinite(value) and value >= 0):
            return f"{name} {value} is not a finite measure"
    return None


def on_ping(
    state: DriverState, driver_id: str, ping: dict[str, Any], now: int, config: TrackerConfig
) -> list[dict[str, Any]]:
    """Apply a clean ping (CleanPing record); return the alerts it raises or resolves."""
    rules, movement = config.stall, state.movement
    ts, lat, lon = int(ping["device_ts"]), float(ping["lat"]), float(ping["lon"])
    alerts = []
    if "offline" in state.alerts:
        alerts.append(_resolve(state, "offline", driver_id, now, "a ping arrived"))
    fresh = state.last_fix is None or ts >= state.last_fix.ts
    if fresh:
        state.last_fix = LastFix(
            ts, lat, lon, int(ping["h3_r9"]), ping.get("accuracy_m"), ping.get("speed_mps")
        )
        state.last_update = max(state.last_update or ts, ts)
    # Windows this fix's time has passed close before the fix joins the open ones.
    alerts += _judge(state, driver_id, stall.close_windows(movement, ts, rules), now, config)
    stalled = state.alerts.get("stall")
    if fresh and stalled and stall.distance_m(lat, lon, stalled.lat, stalled.lon) > rules.radius_m:
        alerts.append(_resolve(state, "stall", driver_id, now, "moving again"))
        movement.still_since, movement.moved_at = None, ts
    repeated = False
    if fresh:
        alerts += _check_frozen(state, driver_id, ping, now, rules)
        # A chip repeating its fix while the phone claims to move says nothing of where the driver is: the
        # frozen-GPS rule speaks for those fixes, and the windows must not read them as standing still.
        repeated = movement.frozen is not None and movement.frozen[3] > 1
    if repeated:
        movement.watermark = max(movement.watermark, ts)
    else:
        stall.observe(movement, ts, lat, lon, rules)
    return alerts


def _check_frozen(
    state: DriverState, driver_id: str, ping: dict[str, Any], now: int, rules: StallConfig
) -> list[dict[str, Any]]:
    ts, lat, lon = int(ping["device_ts"]), float(ping["lat"]), float(ping["lon"])
    started = stall.frozen_run(state.movement, ts, lat, lon, ping.get("speed_mps"), rules)
    reported, run = state.alerts.get("frozen_gps"), state.movement.frozen
    if reported is not None and (run is None or run[2] != reported.started_at):
        del state.alerts["frozen_gps"]  # the frozen run has ended; the schema has no resolution kind
    if started is None or not state.deliveries or now - ts > rules.horizon_ms:
        return []
    return [_open(state, "frozen_gps", driver_id, started, (lat, lon), now)]


def _where(state: DriverState, fallback: tuple[float, float]) -> tuple[float, float]:
    fix = state.last_fix
    return (fix.lat, fix.lon) if fix is not None else fallback


def _notice(
    state: DriverState, kind: str, driver_id: str, delivery: Delivery, at: int, detail: str
) -> dict[str, Any]:
    """Return a one-off alert about a delivery (declined, failed): dispatch acts, nothing stays open."""
    fallback = delivery.pickup if kind == "declined" else delivery.dropoff
    lat, lon = _where(state, fallback)
    opened = OpenAlert(alert_id(kind, f"{driver_id}/{delivery.delivery_id}", at), kind, at, lat, lon,
                       delivery.delivery_id)  # fmt: skip
    return alert_record(kind, driver_id, opened, at, detail=detail)


def applied_record(event: dict[str, Any], delivery: Delivery) -> dict[str, Any]:
    """Return the record of an applied event for ``deliveries.applied``: the event, with the delivery as it
    now stands (its customer, places, promise, ETA and, when failed, why)."""
    return {
        # The writer's own schema version, not the source's: a corrupted one may not even fit an int.
        **{name: value for name, value in event.items() if name != "schema_version"},
        "pickup_lat": delivery.pickup[0],
        "pickup_lon": delivery.pickup[1],
        "dropoff_lat": delivery.dropoff[0],
        "dropoff_lon": delivery.dropoff[1],
        "promised_at": delivery.promised_at,
        "customer_ref": delivery.customer_ref,
        "pickup_address": delivery.pickup_address,
        "dropoff_address": delivery.dropoff_address,
        "customer_name": delivery.customer_name,
        "failure_reason": delivery.failure_reason if delivery.status == Status.FAILED else None,
        "eta": delivery.eta,
    }


def on_event(
    state: DriverState, driver_id: str, event: dict[str, Any], now: int, config: TrackerConfig
) -> tuple[Rejection | Delivery, list[dict[str, Any]]]:
    """Apply a delivery event; return the updated delivery (or the rejection) and the alerts it raises or
    resolves: a declined or failed delivery tells dispatch, an accepted one closes its ``unaccepted``."""
    ts = int(event["ts"])
    if ts > now + config.max_future_ms:
        return Rejection(Reason.FUTURE_TS, f"event time {ts} is ahead of the processing time {now}"), []
    if ts < now - config.horizon_ms:
        return Rejection(Reason.TOO_OLD, f"event time {ts} is older than the horizon"), []
    result = apply_event(state, event, config.partners)
    alerts = []
    if isinstance(result, Delivery) and result.status != Status.ASSIGNED:
        state.alerts.pop(f"unaccepted:{result.delivery_id}", None)
    if isinstance(result, Delivery) and result.status == Status.DECLINED:
        alerts.append(_notice(state, "declined", driver_id, result, ts, "declined by the driver"))
    if isinstance(result, Delivery) and result.status == Status.FAILED:
        alerts.append(
            _notice(state, "delivery_failed", driver_id, result, ts, f"reason:{result.failure_reason}")
        )
    if isinstance(result, Delivery) and result.status in TERMINAL:
        state.alerts.pop(f"late_risk:{result.delivery_id}", None)
    if isinstance(result, Delivery) and "stall" in state.alerts and state.in_transit() is None:
        alerts.append(_resolve(state, "stall", driver_id, now, f"delivery {result.status}"))
        state.movement.still_since = None
    return result, alerts


def on_tick(state: DriverState, driver_id: str, now: int, config: TrackerConfig) -> list[dict[str, Any]]:
    """Advance the driver's windows by the wall clock and check for silence; return the alerts raised."""
    rules = config.stall
    closed = stall.close_windows(state.movement, now - rules.close_grace_ms, rules)
    alerts = _judge(state, driver_id, closed, now, config)
    fix = state.last_fix
    if (
        fix is not None
        and state.deliveries
        and "offline" not in state.alerts
        and now - fix.ts >= rules.offline_ms
    ):
        alerts.append(_open(state, "offline", driver_id, fix.ts, (fix.lat, fix.lon), now))
    return alerts + _unaccepted(state, driver_id, now, config)


def _unaccepted(state: DriverState, driver_id: str, now: int, config: TrackerConfig) -> list[dict[str, Any]]:
    """Alert dispatch, once, of each assignment still neither accepted nor started after the timeout."""
    timeout = config.accept_timeout_ms
    if timeout <= 0:
        return []
    alerts = []
    for delivery in state.deliveries.values():
        key = f"unaccepted:{delivery.delivery_id}"
        waited = now - delivery.assigned_at
        if (
            delivery.status != Status.ASSIGNED
            or key in state.alerts
            or not timeout <= waited <= config.horizon_ms
        ):
            continue
        where = _where(state, delivery.pickup)
        opened = OpenAlert(
            alert_id("unaccepted", f"{driver_id}/{delivery.delivery_id}", delivery.assigned_at),
            "unaccepted",
            delivery.assigned_at,
            where[0],
            where[1],
            delivery.delivery_id,
        )
        state.alerts[key] = opened
        alerts.append(
            alert_record("unaccepted", driver_id, opened, now, detail=f"not accepted in {waited // 1000} s")
        )
    return alerts
