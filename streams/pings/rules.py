"""Pure rules for GPS pings: validate, deduplicate, filter jumps, snap to H3. No I/O, no Faust.

The stateless checks (coordinates, accuracy, clocks) run both at the HTTP edge and in the agent. The
stateful ones (duplicates, jumps, lateness) work on one driver's ``DriverPingState`` (``state.py``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from h3.api import basic_int as h3

from streams.pings.state import DriverPingState, Fix, Seen

if TYPE_CHECKING:
    from base.settings import Settings

H3_MOVEMENT_RES = 9
H3_AGGREGATE_RES = 7
# A fix within this many degrees of (0, 0) is the null-island default of a GPS chip without a fix.
NULL_ISLAND_DEG = 1e-4
# GPS week-number rollover: a receiver with a 10-bit week counter reports dates 1024 weeks in the past.
ROLLOVER_MS = 7168 * 86_400_000
ROLLOVER_SLACK_MS = 3 * 86_400_000
EARTH_RADIUS_M = 6_371_008.8


class Reason(StrEnum):
    """Why a ping was rejected; each code has exactly one meaning and is never reused."""

    MALFORMED = "malformed"
    INVALID_COORDINATES = "invalid_coordinates"
    NULL_ISLAND = "null_island"
    LOW_ACCURACY = "low_accuracy"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    GPS_WEEK_ROLLOVER = "gps_week_rollover"
    DUPLICATE = "duplicate"
    # More seqs in the horizon than the dedupe budget holds exactly: it may be a replay, so never clean.
    POSSIBLE_DUPLICATE = "possible_duplicate"
    IMPLAUSIBLE_SPEED = "implausible_speed"
    UNKNOWN_DRIVER = "unknown_driver"
    RATE_LIMITED = "rate_limited"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A ping that must not go on, with its reason code and a human-readable detail."""

    reason: Reason
    detail: str


@dataclass(frozen=True, slots=True)
class RuleConfig:
    """Thresholds of the cleaning rules; defaults suit motorcycles in a city."""

    max_accuracy_m: float = 100.0
    max_future_ms: int = 120_000
    horizon_ms: int = 24 * 3_600_000
    max_speed_mps: float = 50.0
    # Below this distance a fast-looking step is GPS noise over a short interval, not a jump.
    min_jump_m: float = 250.0

    @classmethod
    def from_settings(cls, settings: Settings) -> RuleConfig:
        """Build the cleaning thresholds from the pipeline's settings."""
        return cls(
            max_accuracy_m=settings.ping_max_accuracy_m,
            max_future_ms=int(settings.ping_max_future_s * 1000),
            horizon_ms=int(settings.ping_horizon_hours * 3_600_000),
            max_speed_mps=settings.ping_max_speed_mps,
        )


def haversine_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the great-circle distance in metres between two fixes."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a)))


def check_coordinates(lat: float, lon: float) -> Rejection | None:
    """Reject NaN, infinite, out-of-range and null-island coordinates."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return Rejection(Reason.INVALID_COORDINATES, f"non-finite coordinate lat={lat} lon={lon}")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return Rejection(Reason.INVALID_COORDINATES, f"out of range lat={lat} lon={lon}")
    if abs(lat) < NULL_ISLAND_DEG and abs(lon) < NULL_ISLAND_DEG:
        return Rejection(Reason.NULL_ISLAND, "fix at (0, 0)")
    return None


def check_stateless(ping: Mapping[str, Any], config: RuleConfig) -> Rejection | None:
    """Apply every rule that needs no history: coordinates, accuracy, and the phone's clock."""
    rejection = check_coordinates(ping["lat"], ping["lon"])
    if rejection is not None:
        return rejection
    accuracy = ping.get("accuracy_m")
    if accuracy is not None and not (accuracy <= config.max_accuracy_m):
        return Rejection(Reason.LOW_ACCURACY, f"accuracy {accuracy} m worse than {config.max_accuracy_m} m")
    age_ms = ping["received_ts"] - ping["device_ts"]
    if age_ms < -config.max_future_ms:
        return Rejection(Reason.FUTURE_TIMESTAMP, f"device clock {-age_ms} ms ahead of arrival")
    if abs(age_ms - ROLLOVER_MS) <= ROLLOVER_SLACK_MS:
        return Rejection(
            Reason.GPS_WEEK_ROLLOVER, f"device time {age_ms / 86_400_000:.1f} days behind arrival"
        )
    if age_ms > config.horizon_ms:
        return Rejection(Reason.TOO_OLD, f"device time {age_ms // 1000} s before arrival")
    return None


def snap(lat: float, lon: float) -> tuple[int, int]:
    """Return the H3 cells (res 9 for movement, res 7 for aggregates) of a valid fix, as integers."""
    cell9 = h3.latlng_to_cell(lat, lon, H3_MOVEMENT_RES)
    return cell9, h3.cell_to_parent(cell9, H3_AGGREGATE_RES)


def _plausible(a: Fix, b: Fix, config: RuleConfig) -> bool:
    distance = haversine_m(a.lat, a.lon, b.lat, b.lon)
    if distance <= config.min_jump_m:
        return True
    seconds = max(abs(b.ts - a.ts), 1000) / 1000
    return distance / seconds <= config.max_speed_mps


def _check_jump(fix: Fix, state: DriverPingState, config: RuleConfig) -> Rejection | None:
    """Reject a fix that no accepted neighbour in event time can explain; never lock on a bad fix."""
    before, after = state.neighbours(fix.ts)
    latest = state.latest()
    if latest is None:
        return None
    if after is None:  # the newest fix: compare with the live position
        if _plausible(before or latest, fix, config):
            state.candidate = None
            return None
        # A real move (or a bad previous fix) is confirmed by a second fix near the first unexplained one.
        candidate = state.candidate
        if candidate is not None and candidate.ts < fix.ts and _plausible(candidate, fix, config):
            state.candidate = None
            return None
        state.candidate = fix
        return Rejection(
            Reason.IMPLAUSIBLE_SPEED, "jump from the last accepted fix, waiting for a second fix"
        )
    if any(n is not None and _plausible(n, fix, config) for n in (before, after)):
        return None
    return Rejection(Reason.IMPLAUSIBLE_SPEED, "late fix that neither neighbour in event time explains")


def evaluate(
    ping: Mapping[str, Any], state: DriverPingState, config: RuleConfig, processed_ts: int
) -> dict[str, Any] | Rejection:
    """Judge one decoded GpsPing against its driver's state; update the state; return CleanPing or why not."""
    ts = ping["device_ts"]
    received = ping["received_ts"]
    # Every ping is remembered, rejected or not, so seq blocks stay whole; a clock outside the horizon
    # is clamped into it and does not shape any block's time span.
    seen_ts = min(max(ts, received - config.horizon_ms), received + config.max_future_ms)
    seen = state.remember(
        ping["ping_id"], ping.get("seq"), seen_ts, received - config.horizon_ms, clock_ok=seen_ts == ts
    )
    rejection = check_stateless(ping, config)
    if rejection is not None:  # a replay of a bad ping gets the same answer as the original
        return rejection
    if seen is Seen.DUPLICATE:
        return Rejection(Reason.DUPLICATE, f"ping {ping['ping_id']} already seen")
    if seen is Seen.UNCERTAIN:
        return Rejection(
            Reason.POSSIBLE_DUPLICATE, f"seq {ping['seq']} lies in this driver's compacted dedupe span"
        )
    fix = Fix(ts, ping["lat"], ping["lon"])
    rejection = _check_jump(fix, state, config)
    if rejection is not None:
        return rejection
    latest = state.latest()
    late = latest is not None and ts < latest.ts
    before, _ = state.neighbours(ts)
    step_m = haversine_m(before.lat, before.lon, fix.lat, fix.lon) if before else 0.0
    speed = step_m / ((ts - before.ts) / 1000) if before and ts > before.ts else None
    state.add_fix(fix)
    cell9, cell7 = snap(fix.lat, fix.lon)
    return {
        **ping,
        "h3_r9": cell9,
        "h3_r7": cell7,
        "step_m": step_m,
        "derived_speed_mps": speed,
        "late": late,
        "processed_ts": processed_ts,
    }


def rejected_ping(
    rejection: Rejection,
    ping: Mapping[str, Any] | None,
    raw: bytes | None,
    source: tuple[str, int, int] | None,
    rejected_ts: int,
) -> dict[str, Any]:
    """Build the RejectedPing record: the reason, and the original ping (or its bytes when undecodable)."""
    topic, partition, offset = source if source else (None, None, None)
    return {
        "reason": str(rejection.reason),
        "detail": rejection.detail,
        "driver_id": ping["driver_id"] if ping else None,
        "ping_id": ping["ping_id"] if ping else None,
        "ping": dict(ping) if ping else None,
        "raw_payload": None if ping else raw,
        "source_topic": topic,
        "source_partition": partition,
        "source_offset": offset,
        "rejected_ts": rejected_ts,
    }
