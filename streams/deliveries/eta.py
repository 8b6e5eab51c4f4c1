"""Pure ETA core: remaining distance, a blended speed, when to publish, late risk, error. No I/O, no Faust.

The speed blends two estimates: the driver's own recent speed (what this rider on this bike is doing now)
and the learned speed of the res-7 H3 cell at this hour of the week (what traffic there usually allows).
The recent speed's weight grows with how many seconds of movement back it up, so one noisy ping cannot
swing the ETA, while several minutes of riding outweigh the historical average.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from streams.deliveries.cell_speeds import CRAWL_FRACTION
from streams.pings.rules import haversine_m

if TYPE_CHECKING:
    from base.settings import Settings


DWELL_THRESHOLDS_S = (60, 120, 240, 480)


class EtaMethod:
    """How an estimate's speed was chosen (the ``method`` field of ``deliveries.eta``)."""

    BLENDED = "blended"
    RECENT = "recent"
    CELL = "cell"
    DWELL = "dwell"
    DEFAULT = "default"
    ROUTING = "routing"
    STRAIGHT_LINE = "straight_line"
    ARRIVED = "arrived"


@dataclass(frozen=True)
class EtaConfig:
    """Thresholds of the ETA; defaults suit motorcycles in São Paulo."""

    min_change_s: float = 60.0
    max_interval_s: float = 300.0
    late_grace_s: float = 120.0
    # Road distance over straight-line distance; city grids run around 1.2 to 1.4.
    detour_factor: float = 1.3
    # Used when neither the driver nor the cell has told us anything yet (about 22 km/h).
    default_speed_mps: float = 6.0
    # A stopped driver still arrives eventually: never divide by a speed below this.
    min_speed_mps: float = 1.5
    max_speed_mps: float = 25.0
    # Seconds of recent movement at which the driver's own speed counts as much as the cell's.
    recent_half_weight_s: float = 120.0
    # However much evidence, the cell keeps this share: recent minutes do not foresee the traffic ahead.
    max_recent_weight: float = 0.8
    # Closer than this to the drop-off, the driver is there.
    arrival_radius_m: float = 50.0
    # Time constant of the driver's recent-speed average.
    recent_tau_s: float = 180.0
    # Slower than this between two fixes, the driver is parked, not riding (as for the learned speeds).
    min_moving_mps: float = 1.0
    # A driver staying within this radius (GPS noise, walking to a door) is stopped.
    stop_radius_m: float = 50.0
    # Riding slower than this share of what the cell usually allows is crawling in a jam: the driver is held
    # up as at a stop, and the hold-up is expected to last as long as stops did.
    crawl_fraction: float = CRAWL_FRACTION
    # A delivery whose riding took longer or shorter than this against its ETAs teaches no calibration.
    ride_ratio_bounds: tuple[float, float] = (0.5, 1.6)
    # How long stops in transit went on, learned beyond each of these elapsed times: a stop of a minute is
    # probably a queue, one of five more likely a wait that lasts.
    dwell_thresholds_s: tuple[int, ...] = DWELL_THRESHOLDS_S
    # A rider's own pace against the cells' learned speeds (some ride faster than the fleet, some slower):
    # averaged over this long of riding, trusted half at this many seconds of it, and bounded, since a pace
    # far outside the bounds is a burst or a passing jam, not the rider.
    pace_tau_s: float = 1800.0
    pace_half_weight_s: float = 60.0
    pace_bounds: tuple[float, float] = (0.8, 1.25)
    # The calibration is learned per class of direction: the bearing from the rider to the drop-off, in
    # classes this wide. How far the streets wander from the straight line depends on which way it runs
    # across the city's grid (along a street, little; across the blocks, up to the two sides of a triangle).
    direction_class_deg: float = 15.0

    def __post_init__(self) -> None:
        positive = ("detour_factor", "default_speed_mps", "min_speed_mps", "max_speed_mps", "recent_tau_s")
        for name in (*positive, "stop_radius_m"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive")
        if self.detour_factor < 1.0:
            raise ValueError("detour_factor must be at least 1")
        if self.min_speed_mps > self.max_speed_mps:
            raise ValueError("min_speed_mps must not exceed max_speed_mps")
        if not 0.0 <= self.max_recent_weight <= 1.0:
            raise ValueError("max_recent_weight must lie in [0, 1]")
        if not 0.0 <= self.crawl_fraction < 1.0:
            raise ValueError("crawl_fraction must lie in [0, 1)")
        if any(t <= 0 for t in self.dwell_thresholds_s):
            raise ValueError("dwell_thresholds_s must be positive")
        if not self.pace_tau_s > 0 or self.pace_half_weight_s < 0:
            raise ValueError("pace_tau_s must be positive and pace_half_weight_s not negative")
        if not 0.0 < self.direction_class_deg <= 360.0:
            raise ValueError("direction_class_deg must lie in (0, 360]")
        if not 0.0 < self.pace_bounds[0] <= 1.0 <= self.pace_bounds[1]:
            raise ValueError("pace_bounds must be positive and hold 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> EtaConfig:
        """Build the ETA thresholds from the pipeline's settings."""
        return cls(
            min_change_s=settings.eta_min_change_s,
            max_interval_s=settings.eta_max_interval_s,
            late_grace_s=settings.eta_late_grace_s,
            detour_factor=settings.eta_detour_factor,
            default_speed_mps=settings.eta_default_speed_mps,
        )


@dataclass(frozen=True)
class EtaEstimate:
    """One estimate of when a delivery reaches its drop-off."""

    eta_ms: int
    remaining_m: float
    speed_mps: float
    method: str
    computed_at: int


@dataclass(frozen=True)
class RecentSpeed:
    """A driver's time-weighted recent speed and how many seconds of movement back it (decayed)."""

    speed_mps: float = 0.0
    evidence_s: float = 0.0
    last_ts: int | None = None


def update_recent_speed(prev: RecentSpeed, step_m: float, ts_ms: int, config: EtaConfig) -> RecentSpeed:
    """Fold one accepted fix (distance from the previous one, event time) into the recent speed.

    Time spent parked (a step slower than ``min_moving_mps``: a restaurant, a customer's door, a stall) is
    not riding: it neither lowers the speed nor adds evidence, so the driver's pace survives the stop.
    """
    if prev.last_ts is None or ts_ms <= prev.last_ts:
        # A first fix, or a late one: it says nothing about the speed now.
        return RecentSpeed(prev.speed_mps, prev.evidence_s, ts_ms if prev.last_ts is None else prev.last_ts)
    dt_s = (ts_ms - prev.last_ts) / 1000.0
    step_speed = min(max(step_m, 0.0) / dt_s, config.max_speed_mps)
    if step_speed < config.min_moving_mps:
        return RecentSpeed(prev.speed_mps, prev.evidence_s, ts_ms)
    # Old evidence fades with elapsed time; a long gap leaves little of it.
    keep = math.exp(-dt_s / config.recent_tau_s)
    kept_s = prev.evidence_s * keep
    evidence = kept_s + dt_s
    speed = (prev.speed_mps * kept_s + step_speed * dt_s) / evidence
    # Evidence saturates: the average covers at most about one time constant of riding.
    return RecentSpeed(speed, min(evidence, config.recent_tau_s), ts_ms)


@dataclass(frozen=True)
class Pace:
    """A rider's riding speed over the learned speed of the cells ridden (1: as fast as the fleet there), and
    how many seconds of riding back it (decayed)."""

    ratio: float = 1.0
    evidence_s: float = 0.0


def update_pace(prev: Pace, step_mps: float, cell_mps: float | None, dt_s: float, config: EtaConfig) -> Pace:
    """Fold one riding step (``step_mps`` over ``dt_s`` seconds, in a cell whose learned speed is
    ``cell_mps``) into the rider's pace.

    Each step is compared with the cell it was ridden in: cells differ far more than riders do. The caller
    passes only steps the learned speeds would count as riding (not parked, not crawling in a jam).
    """
    if not cell_mps or cell_mps <= 0 or dt_s <= 0 or not math.isfinite(step_mps):
        return prev
    kept_s = prev.evidence_s * math.exp(-dt_s / config.pace_tau_s)
    evidence = kept_s + dt_s
    ratio = (prev.ratio * kept_s + step_mps / cell_mps * dt_s) / evidence
    return Pace(ratio, min(evidence, config.pace_tau_s))


def pace_factor(pace: Pace, config: EtaConfig) -> float:
    """Return the pace to divide the learned riding time by: shrunk toward 1 while evidence is thin, and
    bounded."""
    evidence = max(pace.evidence_s, 0.0)
    if evidence <= 0:
        return 1.0
    trust = evidence / (evidence + config.pace_half_weight_s)
    low, high = config.pace_bounds
    return min(max(1.0 + trust * (pace.ratio - 1.0), low), high)


def riding_seconds(
    route_s: float, remaining_m: float, config: EtaConfig, calibration: float = 1.0, pace: float = 1.0
) -> float:
    """Return the riding time left: the time along the way at the learned speeds, times the detour and the
    fleet's learned calibration (how long riders took against what was foreseen), over the rider's pace."""
    seconds = max(route_s, 0.0) * config.detour_factor * calibration / pace
    # The speed bounds hold here too: a few unlucky cells cannot make a rider crawl or fly.
    return min(max(seconds, remaining_m / config.max_speed_mps), remaining_m / config.min_speed_mps)


def estimate_along(
    lat: float,
    lon: float,
    dropoff_lat: float,
    dropoff_lon: float,
    now_ms: int,
    route_s: float,
    config: EtaConfig,
    dwell_s: float = 0.0,
    calibration: float = 1.0,
    pace: float = 1.0,
) -> EtaEstimate:
    """Estimate from the learned travel time along the way (``route_s``: the straight line, cell by cell),
    the rider's pace against it (``pace_factor``) and the seconds the stop the driver is in is expected to
    last still (``dwell_s``)."""
    remaining = remaining_distance_m(lat, lon, dropoff_lat, dropoff_lon, config)
    if remaining <= config.arrival_radius_m * config.detour_factor:
        return EtaEstimate(now_ms, remaining, 0.0, EtaMethod.ARRIVED, now_ms)
    riding = riding_seconds(route_s, remaining, config, calibration, pace)
    method = EtaMethod.DWELL if dwell_s > 0 else EtaMethod.CELL
    seconds = riding + max(dwell_s, 0.0)
    return EtaEstimate(now_ms + round(seconds * 1000.0), remaining, remaining / riding, method, now_ms)


@dataclass(frozen=True)
class Stop:
    """Where the driver is held up (stayed within ``stop_radius_m``, or crawled) since when, and since when
    while in transit."""

    lat: float
    lon: float
    since_ts: int
    in_transit_since: int | None = None


def update_stop(
    prev: Stop | None,
    lat: float,
    lon: float,
    ts_ms: int,
    speed_mps: float | None,
    in_transit: bool,
    config: EtaConfig,
    *,
    crawling: bool = False,
) -> tuple[Stop, float | None]:
    """Follow the driver's current stop on a fresh fix; return it and, when one in transit just ended, its
    in-transit duration (s).

    A fix away from the stop's place, or one whose own speed says the phone is moving (a frozen chip repeats
    its place while the rider goes on), ends the stop and starts a new one where the driver is now. A
    ``crawling`` fix (``is_crawling``: a jam) keeps the driver held up wherever the crawl has got to.
    """
    moving = speed_mps is not None and speed_mps >= config.min_moving_mps
    if prev is not None and (
        crawling or (not moving and haversine_m(prev.lat, prev.lon, lat, lon) <= config.stop_radius_m)
    ):
        since = prev.in_transit_since
        if since is None and in_transit:
            since = ts_ms
        elif since is not None and not in_transit:
            since = None  # the delivery ended during the stop: it is not a wait on the way
        where = (lat, lon) if crawling else (prev.lat, prev.lon)
        return Stop(*where, prev.since_ts, since), None
    ended = None
    if prev is not None and prev.in_transit_since is not None:
        ended = (ts_ms - prev.in_transit_since) / 1000.0
    return Stop(lat, lon, ts_ms, ts_ms if in_transit else None), ended


def is_crawling(speed_mps: float | None, cell_mps: float | None, config: EtaConfig) -> bool:
    """Say whether a driver moving at ``speed_mps`` crawls, far below the cell's learned speed: a jam."""
    if speed_mps is None or cell_mps is None or not math.isfinite(speed_mps):
        return False
    return config.min_moving_mps <= speed_mps < config.crawl_fraction * cell_mps


def dwell_samples(duration_s: float, config: EtaConfig) -> list[tuple[int, float]]:
    """Return (threshold, seconds beyond it) for each dwell threshold a finished stop in transit passed."""
    return [(b, duration_s - b) for b in config.dwell_thresholds_s if duration_s > b]


def expected_dwell_s(
    stop: Stop | None, now_ms: int, learned: Callable[[int], float | None], config: EtaConfig
) -> float:
    """Return how much longer the current stop in transit is expected to last, from what stops that lasted
    as long went on to last (``learned(threshold)``: mean seconds beyond it, or None if not known yet)."""
    if stop is None or stop.in_transit_since is None:
        return 0.0
    elapsed = (now_ms - stop.in_transit_since) / 1000.0
    for threshold in sorted(config.dwell_thresholds_s, reverse=True):
        if elapsed >= threshold:
            beyond = learned(threshold)
            return max(beyond - (elapsed - threshold), 0.0) if beyond is not None else 0.0
    return 0.0


def bearing_deg(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    """Return the initial bearing from one point to another, degrees clockwise from north in [0, 360)."""
    phi1, phi2 = math.radians(lat1), math.radians(lat2)
    dlon = math.radians(lon2 - lon1)
    y = math.sin(dlon) * math.cos(phi2)
    x = math.cos(phi1) * math.sin(phi2) - math.sin(phi1) * math.cos(phi2) * math.cos(dlon)
    return math.degrees(math.atan2(y, x)) % 360.0


def direction_class(lat: float, lon: float, dropoff_lat: float, dropoff_lon: float, config: EtaConfig) -> int:
    """Return the class of the bearing from the rider to the drop-off (0: due north, counting clockwise)."""
    classes = math.ceil(360.0 / config.direction_class_deg)
    return min(
        int(bearing_deg(lat, lon, dropoff_lat, dropoff_lon) // config.direction_class_deg), classes - 1
    )


def ride_ratios(
    rides: list[list[int]], arrived_at_ms: int, held_ms: int, config: EtaConfig
) -> list[tuple[int, float]]:
    """Return (direction class, ratio) of each ETA of a delivery whose riding is known, within the bounds.

    A ride recorded without a direction class (``-1``, or an older three-field record) gives none.
    """
    ratios = []
    low, high = config.ride_ratio_bounds
    for at, riding_ms, held_then, *rest in rides:
        cls = rest[0] if rest else -1
        ridden = arrived_at_ms - at - (held_ms - held_then)
        if cls < 0 or riding_ms <= 0 or ridden <= 0:
            continue
        ratio = ridden / riding_ms
        if low <= ratio <= high:
            ratios.append((cls, ratio))
    return ratios


def ride_ratio(rides: list[list[int]], arrived_at_ms: int, held_ms: int, config: EtaConfig) -> float | None:
    """Return how long a delivery's riding took against the riding time its ETAs foresaw, or None.

    ``rides`` holds, for each ETA published, [computed at, riding ms foreseen, long hold-ups ms so far];
    ``held_ms`` is the long hold-ups' total at arrival. The riding that followed an ETA is the time to the
    arrival less the long hold-ups after it (the dwell speaks for those). A ratio outside the bounds means a
    hold-up the phone never showed (a stop while offline): it teaches nothing about riding.
    """
    took = foreseen = 0
    for at, riding_ms, held_then, *_ in rides:
        ridden = arrived_at_ms - at - (held_ms - held_then)
        if riding_ms > 0 and ridden > 0:
            took, foreseen = took + ridden, foreseen + riding_ms
    if foreseen <= 0:
        return None
    ratio = took / foreseen
    low, high = config.ride_ratio_bounds
    return ratio if low <= ratio <= high else None


def remaining_distance_m(
    lat: float, lon: float, dropoff_lat: float, dropoff_lon: float, config: EtaConfig
) -> float:
    """Return the expected road distance to the drop-off: straight line times the detour factor."""
    return haversine_m(lat, lon, dropoff_lat, dropoff_lon) * config.detour_factor


def recent_weight(evidence_s: float | None, config: EtaConfig) -> float:
    """Return the share of the driver's own speed in the blend, growing with the evidence behind it."""
    if evidence_s is None:
        # The caller did not say how much backs the speed: trust it as much as the cell.
        return min(0.5, config.max_recent_weight)
    evidence = max(evidence_s, 0.0)
    return config.max_recent_weight * evidence / (evidence + config.recent_half_weight_s)


def blend_speed(
    recent_speed_mps: float | None,
    cell_speed_mps: float | None,
    config: EtaConfig,
    recent_evidence_s: float | None = None,
) -> tuple[float, str]:
    """Return the speed to assume and which sources it came from."""
    recent = _usable(recent_speed_mps)
    cell = _usable(cell_speed_mps)
    if recent is not None and cell is not None:
        w = recent_weight(recent_evidence_s, config)
        speed, method = w * recent + (1.0 - w) * cell, EtaMethod.BLENDED
    elif cell is not None:
        speed, method = cell, EtaMethod.CELL
    elif recent is not None:
        # Without history, shrink a thin recent estimate toward the default instead of believing it.
        w = recent_weight(recent_evidence_s, config) / max(config.max_recent_weight, 1e-9)
        speed, method = w * recent + (1.0 - w) * config.default_speed_mps, EtaMethod.RECENT
    else:
        speed, method = config.default_speed_mps, EtaMethod.DEFAULT
    return min(max(speed, config.min_speed_mps), config.max_speed_mps), method


def _usable(speed: float | None) -> float | None:
    if speed is None or not math.isfinite(speed) or speed < 0:
        return None
    return speed


def estimate_eta(
    lat: float,
    lon: float,
    dropoff_lat: float,
    dropoff_lon: float,
    now_ms: int,
    recent_speed_mps: float | None,
    cell_speed_mps: float | None,
    config: EtaConfig,
    *,
    recent_evidence_s: float | None = None,
) -> EtaEstimate:
    """Estimate when the driver at (lat, lon) reaches the drop-off, from the blended speed."""
    remaining = remaining_distance_m(lat, lon, dropoff_lat, dropoff_lon, config)
    if remaining <= config.arrival_radius_m * config.detour_factor:
        return EtaEstimate(now_ms, remaining, 0.0, EtaMethod.ARRIVED, now_ms)
    speed, method = blend_speed(recent_speed_mps, cell_speed_mps, config, recent_evidence_s)
    return EtaEstimate(now_ms + round(remaining / speed * 1000.0), remaining, speed, method, now_ms)


def estimate_from_route(duration_s: float, distance_m: float, now_ms: int, config: EtaConfig) -> EtaEstimate:
    """Turn a routing provider's answer (travel time, road distance) into an estimate."""
    speed = distance_m / duration_s if duration_s > 0 else config.default_speed_mps
    return EtaEstimate(
        now_ms + round(max(duration_s, 0.0) * 1000.0), distance_m, speed, EtaMethod.ROUTING, now_ms
    )


def straight_line_eta(
    lat: float, lon: float, dropoff_lat: float, dropoff_lon: float, now_ms: int, speed_mps: float
) -> EtaEstimate:
    """Estimate naively: straight-line distance at one constant speed (the benchmark's baseline)."""
    remaining = haversine_m(lat, lon, dropoff_lat, dropoff_lon)
    return EtaEstimate(
        now_ms + round(remaining / speed_mps * 1000.0), remaining, speed_mps, EtaMethod.STRAIGHT_LINE, now_ms
    )


def should_emit(last: EtaEstimate | None, new: EtaEstimate, config: EtaConfig) -> bool:
    """Publish when there is no estimate yet, the ETA moved enough, or the last one is getting old."""
    if last is None:
        return True
    if abs(new.eta_ms - last.eta_ms) >= config.min_change_s * 1000.0:
        return True
    return new.computed_at - last.computed_at >= config.max_interval_s * 1000.0


def is_late_risk(estimate: EtaEstimate, promised_at_ms: int | None, config: EtaConfig) -> bool:
    """Say whether the estimate passes the promised time by more than the grace."""
    if promised_at_ms is None:
        return False
    return estimate.eta_ms > promised_at_ms + config.late_grace_s * 1000.0


@dataclass(frozen=True)
class EtaError:
    """How far an estimate was from the arrival (signed, late is positive) and how early it was made."""

    error_s: float
    horizon_s: float

    @property
    def abs_error_s(self) -> float:
        """Return the absolute error in seconds."""
        return abs(self.error_s)


def eta_error(estimate: EtaEstimate, arrived_at_ms: int) -> EtaError:
    """Return the error of an estimate against the actual arrival (positive: arrived after the ETA)."""
    return EtaError(
        (arrived_at_ms - estimate.eta_ms) / 1000.0, (arrived_at_ms - estimate.computed_at) / 1000.0
    )
