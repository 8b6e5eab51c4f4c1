"""Pure core of the learned speeds: which samples count, their keys, and a decayed average. No I/O, no Faust.

A key is a res-7 H3 cell and an hour of the week (São Paulo time, where rush hours happen), written
``"<cell hex>:<hour>"``. Its value is an exponentially decayed mean over event time: old weeks fade, so
a new road layout or a changed traffic pattern takes over within a few weeks.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from h3.api import basic_int as h3

from streams.pings.rules import haversine_m

HOUR_MS = 3_600_000
WEEK_HOURS = 168
# São Paulo has kept UTC-3 all year since 2019 (no daylight saving time).
LOCAL_OFFSET_MS = -3 * HOUR_MS
# 1970-01-01 was a Thursday; shift so that hour 0 is Monday 00:00.
_EPOCH_WEEKDAY_SHIFT_H = 3 * 24
_PACK = struct.Struct(">ddq")


# Slower than this share of what a cell usually allows is crawling in a jam: the ETA counts it as a hold-up
# (like a stop), so it is not the cell's riding speed either.
CRAWL_FRACTION = 0.45


@dataclass(frozen=True)
class SpeedConfig:
    """What a sample must look like to count, and how fast history fades."""

    # Below this a rider is parked (waiting at a restaurant, a stall), which says nothing about traffic.
    min_moving_mps: float = 1.0
    crawl_fraction: float = CRAWL_FRACTION
    max_speed_mps: float = 30.0
    # Weight halves every two weeks of event time.
    half_life_ms: int = 14 * 24 * HOUR_MS
    # Fewer samples than this (decayed) and the cell does not speak for its hour.
    min_weight: float = 5.0


@dataclass(frozen=True, slots=True)
class CellSpeed:
    """A decayed mean speed, the decayed number of samples behind it, and the newest sample's time."""

    speed_mps: float
    weight: float
    last_ts: int

    def pack(self) -> bytes:
        """Return the 24-byte form the table and its changelog hold."""
        return _PACK.pack(self.speed_mps, self.weight, self.last_ts)

    @classmethod
    def unpack(cls, raw: bytes) -> CellSpeed:
        """Read the packed form back."""
        speed, weight, ts = _PACK.unpack(raw)
        return cls(speed, weight, ts)


def hour_of_week(ts_ms: int) -> int:
    """Return the local hour of the week of an epoch-ms instant, 0 = Monday 00:00 to 167."""
    hours = (ts_ms + LOCAL_OFFSET_MS) // HOUR_MS + _EPOCH_WEEKDAY_SHIFT_H
    return int(hours % WEEK_HOURS)


def cell_key(h3_r7: int, how: int) -> str:
    """Return the table key of a cell at an hour of the week."""
    return f"{h3_r7:x}:{how}"


def sample_of(
    ping: Mapping[str, Any], config: SpeedConfig, known: Callable[[int, int], float | None] | None = None
) -> tuple[str, float, int] | None:
    """Return (key, speed, event time) for a clean ping that tells something about riding in traffic, else
    None. ``known(h3_r7, ts)``: what a cell has taught so far at an instant's hour, asked only of a ping
    that is riding."""
    speed = ping.get("derived_speed_mps")
    if ping.get("late") or speed is None or not math.isfinite(speed):
        # A late fix was measured against a newer one: its derived speed is not a riding speed.
        return None
    if not config.min_moving_mps <= speed <= config.max_speed_mps:
        return None
    phone = ping.get("speed_mps")
    if phone is not None and phone < config.min_moving_mps:
        return None  # the phone says it stands still: the step is GPS jitter or a walk to the door
    ts, cell = int(ping["device_ts"]), int(ping["h3_r7"])
    known_mps = known(cell, ts) if known is not None else None
    if known_mps is not None and speed < config.crawl_fraction * known_mps:
        return None  # crawling in a jam: a hold-up the dwell accounts for, not how the cell rides
    return cell_key(cell, hour_of_week(ts)), float(speed), ts


def summarize(samples: Iterable[tuple[str, float, int]]) -> dict[str, tuple[float, int, int]]:
    """Sum a batch's samples per key into (sum of speeds, count, newest time): one record per key."""
    sums: dict[str, tuple[float, int, int]] = {}
    for key, speed, ts in samples:
        total, count, newest = sums.get(key, (0.0, 0, ts))
        sums[key] = (total + speed, count + 1, max(newest, ts))
    return sums


def fold(prev: CellSpeed | None, speed_sum: float, count: int, ts: int, config: SpeedConfig) -> CellSpeed:
    """Add ``count`` samples of mean ``speed_sum / count`` seen at ``ts`` to the decayed mean."""
    if count <= 0:
        raise ValueError("count must be positive")
    if prev is None:
        return CellSpeed(speed_sum / count, float(count), ts)
    # Samples older than the newest seen are not decayed backwards: they count as of the newest time.
    elapsed = max(ts - prev.last_ts, 0)
    kept = prev.weight * 0.5 ** (elapsed / config.half_life_ms)
    weight = kept + count
    return CellSpeed((prev.speed_mps * kept + speed_sum) / weight, weight, max(ts, prev.last_ts))


# The fleet-wide key of how long riding took against the riding time the ETAs foresaw.
RIDE_KEY = "ride:ratio"


def ride_key(direction: int | None) -> str:
    """Return the table key of the riding calibration for a class of the drop-off's direction
    (``eta.direction_class``), or the whole fleet's (None)."""
    return RIDE_KEY if direction is None else f"{RIDE_KEY}:to:{direction}"


def dwell_key(threshold_s: int) -> str:
    """Return the table key of how long stops in transit went on beyond a threshold (fleet-wide)."""
    return f"dwell:{threshold_s}"


def lookup_fleet(speeds: Mapping[str, CellSpeed], key: str, config: SpeedConfig) -> float | None:
    """Return the mean a fleet-wide key (a dwell) holds, if enough samples back it."""
    found = speeds.get(key)
    return found.speed_mps if found is not None and found.weight >= config.min_weight else None


def neighbour_hours(how: int) -> tuple[int, int, int]:
    """Return the hour itself, then the hours on either side: traffic changes smoothly."""
    return how, (how - 1) % WEEK_HOURS, (how + 1) % WEEK_HOURS


def lookup(speeds: Mapping[str, CellSpeed], h3_r7: int, ts_ms: int, config: SpeedConfig) -> float | None:
    """Return the learned speed of a cell at an instant's hour (or a neighbouring hour), if known enough."""
    for how in neighbour_hours(hour_of_week(ts_ms)):
        found = speeds.get(cell_key(h3_r7, how))
        if found is not None and found.weight >= config.min_weight:
            return found.speed_mps
    return None


def time_along(
    cell_speed: Callable[[int, int], float | None],
    lat: float,
    lon: float,
    dropoff_lat: float,
    dropoff_lon: float,
    ts_ms: int,
    step_m: float = 250.0,
) -> float | None:
    """Return the seconds the straight line to the drop-off takes at the learned speeds of its cells.

    A trip crosses several res-7 cells (about 1.2 km across); the one the driver is in says little about the
    rest of the way. Travel time is a sum over stretches of length over speed; a stretch in a cell nobody
    has learned takes the mean of the known ones' slowness. Each stretch is ridden at its cell's speed at the
    hour it is reached (the clock runs along the way at the speeds so far): a ride that outlasts a rush hour
    rides its end in the traffic after it. None when no cell on the way is known.
    """
    distance = haversine_m(lat, lon, dropoff_lat, dropoff_lon)
    stretches = max(1, int(distance // step_m))
    length_ms = distance / (stretches + 1) * 1000.0
    inverse, known, elapsed_ms = 0.0, 0, 0.0
    for i in range(stretches + 1):
        f = i / stretches
        cell = h3.latlng_to_cell(lat + (dropoff_lat - lat) * f, lon + (dropoff_lon - lon) * f, 7)
        speed = cell_speed(cell, ts_ms + int(elapsed_ms))
        if speed:
            inverse += 1.0 / speed
            known += 1
            elapsed_ms += length_ms / speed
    return distance * inverse / known if known else None
