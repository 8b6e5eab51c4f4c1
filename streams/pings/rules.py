"""Pure rules for one GPS ping: validate, then snap to H3. No I/O, no Faust."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from h3.api import basic_int as h3

H3_MOVEMENT_RES = 9
H3_AGGREGATE_RES = 7
# A fix within this many degrees of (0, 0) is the null-island default of a GPS chip without a fix.
NULL_ISLAND_DEG = 1e-4


class Reason(StrEnum):
    """Why a ping was rejected; each code has exactly one meaning and is never reused."""

    MALFORMED = "malformed"
    INVALID_COORDINATES = "invalid_coordinates"
    NULL_ISLAND = "null_island"
    LOW_ACCURACY = "low_accuracy"
    FUTURE_TIMESTAMP = "future_timestamp"
    TOO_OLD = "too_old"
    DUPLICATE = "duplicate"
    IMPLAUSIBLE_SPEED = "implausible_speed"
    UNKNOWN_DRIVER = "unknown_driver"


@dataclass(frozen=True, slots=True)
class Rejection:
    """A ping that must not go on, with its reason code and a human-readable detail."""

    reason: Reason
    detail: str


def check_coordinates(lat: float, lon: float) -> Rejection | None:
    """Reject NaN, infinite, out-of-range and null-island coordinates."""
    if not (math.isfinite(lat) and math.isfinite(lon)):
        return Rejection(Reason.INVALID_COORDINATES, f"non-finite coordinate lat={lat} lon={lon}")
    if not (-90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0):
        return Rejection(Reason.INVALID_COORDINATES, f"out of range lat={lat} lon={lon}")
    if abs(lat) < NULL_ISLAND_DEG and abs(lon) < NULL_ISLAND_DEG:
        return Rejection(Reason.NULL_ISLAND, "fix at (0, 0)")
    return None


def snap(lat: float, lon: float) -> tuple[int, int]:
    """Return the H3 cells (res 9 for movement, res 7 for aggregates) of a valid fix, as integers."""
    cell9 = h3.latlng_to_cell(lat, lon, H3_MOVEMENT_RES)
    return cell9, h3.cell_to_parent(cell9, H3_AGGREGATE_RES)


def clean(ping: Mapping[str, Any], processed_ts: int) -> dict[str, Any] | Rejection:
    """Validate one decoded GpsPing and return its CleanPing, or the reason it is rejected."""
    lat, lon = ping["lat"], ping["lon"]
    rejection = check_coordinates(lat, lon)
    if rejection is not None:
        return rejection
    cell9, cell7 = snap(lat, lon)
    return {
        **ping,
        "h3_r9": cell9,
        "h3_r7": cell7,
        "step_m": 0.0,
        "derived_speed_mps": None,
        "late": False,
        "processed_ts": processed_ts,
    }
