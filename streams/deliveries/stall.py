"""Movement extents on event-time hopping windows, and the stall, frozen-GPS and geofence rules. Pure.

A window is ``[start, start + window)``, a new one every ``step`` (hopping). Each fix widens the extent (a
lat/lon bounding box, first and last fix time) of every window that holds its event time. A window closes
once event time has passed its end, moved either by the driver's own pings (the newest fix time) or, for a
driver who went silent, by the wall clock minus a grace; each window is judged once, when it closes. A
window is *still* when its fixes fit in a circle of ``radius_m`` and cover it from its first step to its
last. A run of still windows is a stop; a stop outside every geofence while a delivery is in transit is a
stall.

A closed window never reopens: a late fix for it is dropped from the extents, and a window that closed
longer than ``horizon_ms`` before the moment it was judged (a phone's backlog uploaded long after) can
extend a stop but never raise an alert.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from shapely import affinity
from shapely.geometry import Point, shape
from shapely.geometry.base import BaseGeometry

from streams.pings.rules import EARTH_RADIUS_M
from streams.pings.rules import haversine_m as distance_m

M_PER_DEG_LAT = math.pi * EARTH_RADIUS_M / 180


@dataclass(frozen=True)
class StallConfig:
    """Tunables of the movement rules (times in milliseconds)."""

    radius_m: float = 100.0
    window_ms: int = 300_000
    step_ms: int = 30_000
    horizon_ms: int = 120_000
    close_grace_ms: int = 15_000
    offline_ms: int = 180_000
    geofence_m: float = 150.0
    frozen_repeats: int = 5
    frozen_min_ms: int = 20_000
    frozen_min_speed_mps: float = 2.0


@dataclass(slots=True)
class Extent:
    """Where a driver was during one hopping window."""

    start: int
    min_lat: float
    max_lat: float
    min_lon: float
    max_lon: float
    first_ts: int
    last_ts: int
    fixes: int = 1

    def add(self, ts: int, lat: float, lon: float) -> None:
        """Widen the extent to hold a fix."""
        # Plain comparisons: every fix lands in window / step extents, and min()/max() cost twice as much.
        if lat < self.min_lat:
            self.min_lat = lat
        if lat > self.max_lat:
            self.max_lat = lat
        if lon < self.min_lon:
            self.min_lon = lon
        if lon > self.max_lon:
            self.max_lon = lon
        if ts < self.first_ts:
            self.first_ts = ts
        if ts > self.last_ts:
            self.last_ts = ts
        self.fixes += 1

    def center(self) -> tuple[float, float]:
        """Return the middle of the bounding box."""
        return (self.min_lat + self.max_lat) / 2, (self.min_lon + self.max_lon) / 2

    def radius_m(self) -> float:
        """Return the radius of the smallest circle around the bounding box, metres."""
        return distance_m(self.min_lat, self.min_lon, self.max_lat, self.max_lon) / 2


@dataclass(slots=True)
class OpenAlert:
    """An alert raised and not yet resolved."""

    alert_id: str
    kind: str
    started_at: int
    lat: float
    lon: float
    delivery_id: str | None


@dataclass(slots=True)
class Movement:
    """A driver's movement memory: open windows, the current stop, and a run of identical fixes."""

    windows: list[Extent] = field(default_factory=list)  # open windows, by start
    watermark: int = -1  # newest fix time seen
    closed_until: int = -1  # windows ending at or before this are closed
    still_since: int | None = None  # first fix of the current run of still windows
    moved_at: int = -1  # fix time that ended the last stall: windows older than it cannot start a new one
    frozen: list[Any] | None = None  # [lat, lon, first_ts, repeats] of a run of identical moving fixes

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Movement:
        """Rebuild from the plain data ``DriverState.pack`` wrote."""
        return cls(**{**data, "windows": [Extent(**w) for w in data["windows"]]})


def observe(movement: Movement, ts: int, lat: float, lon: float, config: StallConfig) -> None:
    """Add a fix to every open window that holds its event time; a fix for a closed window is dropped."""
    first = -(-(ts - config.window_ms + 1) // config.step_ms) * config.step_ms
    by_start = {extent.start: extent for extent in movement.windows}
    added = False
    for start in range(first, ts + 1, config.step_ms):
        if start + config.window_ms <= movement.closed_until:
            continue  # closed windows never reopen
        extent = by_start.get(start)
        if extent is not None:
            extent.add(ts, lat, lon)
        else:
            movement.windows.append(Extent(start, lat, lat, lon, lon, ts, ts))
            added = True
    if added:
        movement.windows.sort(key=lambda e: e.start)
    movement.watermark = max(movement.watermark, ts)


def close_windows(movement: Movement, until: int, config: StallConfig) -> list[Extent]:
    """Close and return, oldest first, every open window ending at or before ``until``."""
    closed = [e for e in movement.windows if e.start + config.window_ms <= until]
    if closed:
        movement.windows = [e for e in movement.windows if e.start + config.window_ms > until]
    movement.closed_until = max(movement.closed_until, until)
    return closed


def is_still(extent: Extent, config: StallConfig) -> bool:
    """Tell whether a closed window shows a driver who stayed put for all of it."""
    # Fixes in its first and in its last step: a phone that fell silent before the window ended says
    # nothing about the rest (the offline rule speaks for the silence), and the wall-clock timer closes
    # such windows for every silent driver; a window judged still always ends with a fix near its end.
    covered = (
        extent.first_ts - extent.start < config.step_ms
        and extent.start + config.window_ms - extent.last_ts <= config.step_ms
    )
    return covered and extent.radius_m() <= config.radius_m


@functools.lru_cache(maxsize=4096)
def circle(lat: float, lon: float, radius_m: float) -> BaseGeometry:
    """Return a circle of ``radius_m`` around a point, in lon/lat degrees (an ellipse off the equator)."""
    degrees = radius_m / M_PER_DEG_LAT
    scale = 1 / max(math.cos(math.radians(lat)), 1e-6)
    return affinity.scale(Point(lon, lat).buffer(degrees, quad_segs=16), xfact=scale, yfact=1.0)


def depots_from_geojson(data: dict[str, Any]) -> list[BaseGeometry]:
    """Return the polygons of a GeoJSON FeatureCollection, Feature or geometry (lon/lat)."""
    if data.get("type") == "FeatureCollection":
        return [shape(f["geometry"]) for f in data.get("features", []) if f.get("geometry")]
    if data.get("type") == "Feature":
        return [shape(data["geometry"])]
    return [shape(data)]


def in_geofence(lat: float, lon: float, fences: Iterable[BaseGeometry]) -> bool:
    """Tell whether a point lies in any geofence."""
    point = Point(lon, lat)
    return any(fence.covers(point) for fence in fences)


def frozen_run(
    movement: Movement, ts: int, lat: float, lon: float, speed_mps: float | None, config: StallConfig
) -> int | None:
    """Track identical fixes sent while the phone claims to move; return the run's start once it is frozen.

    Returns the start only on the fix that makes the run frozen, so one run is reported once.
    """
    moving = speed_mps is not None and speed_mps >= config.frozen_min_speed_mps
    run = movement.frozen  # [lat, lon, first_ts, repeats, reported]
    if not moving or run is None or (run[0], run[1]) != (lat, lon):
        movement.frozen = [lat, lon, ts, 1, False] if moving else None
        return None
    run[3] += 1
    if not run[4] and run[3] >= config.frozen_repeats and ts - run[2] >= config.frozen_min_ms:
        run[4] = True
        return int(run[2])
    return None
