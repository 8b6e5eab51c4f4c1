"""Drivers doing deliveries through São Paulo, with the episodes dispatchers care about. Pure: no I/O.

Each driver takes a delivery (assigned), rides to the pickup, waits, picks up (picked_up, en_route), rides to
the drop-off (arrived) and hands over (delivered), then takes the next. Riding speed depends on the res-7
cell and the hour (rush hours are slow), so learned cell speeds carry information; roads are not straight
(each leg turns one corner, a detour of 1 to 1.41). One episode may be injected into a delivery:

- ``stall``: stops outside any geofence for longer than the stall time -> one ``stall`` alert;
- ``wait_pickup`` / ``wait_dropoff``: long waits inside the geofence while in transit -> no alert;
- ``jam``: crawls (1.3-1.8 m/s) for minutes, moving beyond the stall radius -> no alert;
- ``offline``: the phone sends nothing for longer than the offline time while riding -> one ``offline``;
- ``late_batch``: stops while offline; the stop's pings are uploaded minutes after riding on -> one
  ``offline`` for the silence and no stall (the stop is old news when it arrives);
- ``frozen``: the phone repeats one fix while claiming to move, in slow traffic -> one ``frozen_gps``.

Every ping and event carries ``upload_at``: when the phone sends it (event time plus network, or much later
for a backlog). The truth is each delivery's actual arrival and the alerts expected.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field, replace
from typing import Any

from h3.api import basic_int as h3

from simulator.model import LOCAL_OFFSET_MS, M_PER_DEG, SAO_PAULO, _offset

EPISODES = ("none", "stall", "wait_pickup", "wait_dropoff", "jam", "offline", "late_batch", "frozen")
EXPECTED_ALERT = {"stall": "stall", "offline": "offline", "late_batch": "offline", "frozen": "frozen_gps"}
DEFAULT_WEIGHTS = (0.30, 0.18, 0.10, 0.10, 0.10, 0.08, 0.07, 0.07)


@dataclass(frozen=True)
class DeliverySimConfig:
    """A simulated delivery fleet."""

    drivers: int = 500
    minutes: float = 18.0
    interval_s: float = 5.0
    start_ms: int = 0
    seed: int = 7
    center: tuple[float, float] = SAO_PAULO
    radius_m: float = 7_000.0
    pickup_m: tuple[float, float] = (700.0, 1_400.0)
    dropoff_m: tuple[float, float] = (1_800.0, 3_200.0)
    # How far into the drop-off leg an episode starts: clear of both geofences.
    inject_after_m: tuple[float, float] = (500.0, 800.0)
    stall_minutes: float = 5.0
    offline_minutes: float = 3.0
    # Durations that do not scale with the stall time; a fleet for a shrunken stall time shrinks them too.
    light_s: tuple[float, float] = (15.0, 40.0)
    frozen_s: tuple[float, float] = (80.0, 110.0)
    jam_mps: tuple[float, float] = (1.3, 1.8)
    weights: tuple[float, ...] = DEFAULT_WEIGHTS
    driver_prefix: str = "dsim"
    # The local hour whose traffic the fleet rides in; None: the hour of each moment, rush hours and all.
    traffic_hour: int | None = None


@dataclass(frozen=True)
class Episode:
    """An injected episode and the alert it must raise (None: it must raise none)."""

    kind: str
    driver_id: str
    delivery_id: str
    start_ms: int
    end_ms: int
    expected_alert: str | None
    # False when the run ended during the episode: it is then neither expected nor a false alarm.
    complete: bool = True


@dataclass
class SimDelivery:
    """A delivery's plan and what actually happened to it."""

    delivery_id: str
    driver_id: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    assigned_at: int
    promised_at: int
    arrived_at: int | None = None
    delivered_at: int | None = None


@dataclass
class DriverDay:
    """One driver's pings and delivery events (each with ``upload_at``), deliveries and episodes."""

    driver_id: str
    pings: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    deliveries: list[SimDelivery] = field(default_factory=list)
    episodes: list[Episode] = field(default_factory=list)


def _unit(x: int) -> float:
    """Map an integer to [0, 1) deterministically (a Fibonacci hash)."""
    return ((x * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFF) / float(1 << 48)


def area_speed_mps(lat: float, lon: float, ts_ms: int, hour: int | None = None) -> float:
    """Return the typical riding speed at a place and time (or local ``hour``): per res-7 cell and hour."""
    cell = h3.latlng_to_cell(lat, lon, 7)
    if hour is None:
        hour = ((ts_ms + LOCAL_OFFSET_MS) // 3_600_000) % 24
    rush = 0.6 if hour in (7, 8, 9, 17, 18, 19) else 1.15 if hour < 6 or hour >= 22 else 1.0
    return 8.0 * (0.5 + _unit(cell)) * rush


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    north = (b[0] - a[0]) * M_PER_DEG
    east = (b[1] - a[1]) * M_PER_DEG * math.cos(math.radians(a[0]))
    return math.hypot(north, east)


class _Rider:
    """Ground truth motion along a leg with one corner, at the area's speed times the rider's own pace."""

    def __init__(self, rng: random.Random, at: tuple[float, float]) -> None:
        self.rng = rng
        self.pos = at
        self.pace = rng.uniform(0.85, 1.15)
        self.path: list[tuple[float, float]] = []
        self.travelled_m = 0.0

    def go(self, to: tuple[float, float]) -> None:
        corner = (to[0], self.pos[1]) if self.rng.random() < 0.5 else (self.pos[0], to[1])
        self.path, self.travelled_m = [corner, to], 0.0

    def arrived(self) -> bool:
        return not self.path

    def advance(self, dt_s: float, speed_mps: float) -> None:
        step = speed_mps * dt_s
        while step > 0 and self.path:
            target = self.path[0]
            remaining = _distance(self.pos, target)
            if step >= remaining:
                self.pos, step = target, step - remaining
                self.travelled_m += remaining
                self.path.pop(0)
            else:
                frac = step / remaining
                north = (target[0] - self.pos[0]) * M_PER_DEG * frac
                east = (target[1] - self.pos[1]) * M_PER_DEG * math.cos(math.radians(self.pos[0])) * frac
                self.pos = _offset(*self.pos, north, east)
                self.travelled_m += step
                step = 0


class _DriverSim:
    """Step one driver through its deliveries, recording pings, events, truth."""

    def __init__(self, config: DeliverySimConfig, index: int) -> None:
        self.config = config
        self.rng = random.Random(config.seed * 1_000_003 + index)
        self.day = DriverDay(f"{config.driver_prefix}-{index:05d}")
        r = config.radius_m * math.sqrt(self.rng.random())
        a = self.rng.uniform(0, 2 * math.pi)
        self.rider = _Rider(self.rng, _offset(*config.center, r * math.cos(a), r * math.sin(a)))
        self.now = config.start_ms + int(self.rng.uniform(0, 30_000))
        self.end = config.start_ms + int(config.minutes * 60_000)
        self.seq = 0
        self.light_s = 0.0
        self.backlog: list[dict[str, Any]] = []
        self.reached_at: int | None = None  # when the rider reached the end of the current leg

    # -- recording ---------------------------------------------------------------------------
    def _ping(
        self, *, speed: float | None, fix: tuple[float, float] | None = None, upload: bool = True
    ) -> None:
        accuracy = round(self.rng.uniform(4.0, 12.0), 1)
        if fix is None:
            sigma = accuracy / 3
            fix = _offset(*self.rider.pos, self.rng.gauss(0, sigma), self.rng.gauss(0, sigma))
        ping = {
            "ping_id": f"{self.day.driver_id}:{self.seq}",
            "driver_id": self.day.driver_id,
            "device_ts": self.now,
            "lat": round(fix[0], 7),
            "lon": round(fix[1], 7),
            "accuracy_m": accuracy,
            "speed_mps": None if speed is None else round(speed, 2),
            "heading": None,
            "battery": 80.0,
            "seq": self.seq,
            "source": "simulator",
            "upload_at": self.now + 800,
        }
        self.seq += 1
        (self.day.pings if upload else self.backlog).append(ping)

    def _event(self, delivery: SimDelivery, kind: str) -> None:
        event: dict[str, Any] = {
            "event_id": f"{delivery.delivery_id}:{kind}",
            "delivery_id": delivery.delivery_id,
            "driver_id": self.day.driver_id,
            "type": kind,
            "ts": self.now,
            "pickup_lat": None,
            "pickup_lon": None,
            "dropoff_lat": None,
            "dropoff_lon": None,
            "promised_at": None,
            "customer_ref": None,
            "source": "simulator",
            "note": None,
            "upload_at": self.now + 500,
        }
        if kind == "assigned":
            event |= {
                "pickup_lat": delivery.pickup[0],
                "pickup_lon": delivery.pickup[1],
                "dropoff_lat": delivery.dropoff[0],
                "dropoff_lon": delivery.dropoff[1],
                "promised_at": delivery.promised_at,
                "customer_ref": f"cust-{delivery.delivery_id[-6:]}",
            }
        self.day.events.append(event)
        self.now += 1000  # taps on the phone are a second apart

    # -- motion ------------------------------------------------------------------------------
    def _area_speed(self) -> float:
        return area_speed_mps(*self.rider.pos, self.now, self.config.traffic_hour)

    def _tick(self) -> float:
        dt = self.config.interval_s * self.rng.uniform(0.9, 1.1)
        self.now += int(dt * 1000)
        return dt

    def _advance(self, dt: float, speed: float) -> None:
        was_riding = not self.rider.arrived()
        self.rider.advance(dt, speed)
        if was_riding and self.rider.arrived():
            # Reached within this tick: interpolate nothing, the fix of this tick is at the door.
            self.reached_at = self.now

    def _go(self, to: tuple[float, float]) -> None:
        self.rider.go(to)
        self.reached_at = None

    def _ride(self, until_m: float | None = None, speed: float | None = None, *, lights: bool = True) -> None:
        """Ride along the current leg until it ends, ``until_m`` metres are done, or the run ends."""
        while not self.rider.arrived() and self.now < self.end:
            if until_m is not None and self.rider.travelled_m >= until_m:
                return
            dt = self._tick()
            if lights and self.light_s <= 0 and self.rng.random() < 0.012:
                self.light_s = self.rng.uniform(*self.config.light_s)  # a red light: far shorter than a stall
            if self.light_s > 0:
                self.light_s -= dt
                self._ping(speed=0.0)
                continue
            v = speed or self._area_speed() * self.rider.pace * self.rng.uniform(0.9, 1.1)
            self._advance(dt, v)
            self._ping(speed=v)

    def _stay(self, seconds: float, *, upload: bool = True, radius_m: float = 0.0) -> None:
        """Stay put (within ``radius_m`` of walking) for a while."""
        end = min(self.now + int(seconds * 1000), self.end)
        home = self.rider.pos
        while self.now < end:
            self._tick()
            if radius_m:
                self.rider.pos = _offset(
                    *home, self.rng.uniform(-radius_m, radius_m), self.rng.uniform(-radius_m, radius_m)
                )
            self._ping(speed=0.0, upload=upload)
        self.rider.pos = home

    def _silent(self, seconds: float, *, ride: bool) -> None:
        """Send nothing for a while, riding on or standing still."""
        end = min(self.now + int(seconds * 1000), self.end)
        while self.now < end:
            dt = self._tick()
            if ride:
                self._advance(dt, self._area_speed() * self.rider.pace)

    # -- one delivery ------------------------------------------------------------------------
    def _new_delivery(self, n: int) -> SimDelivery:
        cfg, rng = self.config, self.rng
        a, b = rng.uniform(0, 2 * math.pi), rng.uniform(0, 2 * math.pi)
        pickup = _offset(*self.rider.pos, *_polar(rng.uniform(*cfg.pickup_m), a))
        dropoff = _offset(*pickup, *_polar(rng.uniform(*cfg.dropoff_m), b))
        planned_s = (_distance(self.rider.pos, pickup) + _distance(pickup, dropoff)) * 1.3 / 6.5 + 240
        delivery_id = f"{self.day.driver_id}-d{n}"
        return SimDelivery(
            delivery_id, self.day.driver_id, pickup, dropoff, self.now, self.now + int(planned_s * 1000)
        )

    def deliver(self, n: int) -> None:
        cfg, rng = self.config, self.rng
        d = self._new_delivery(n)
        self.day.deliveries.append(d)
        kind = rng.choices(EPISODES, cfg.weights)[0]
        n_s, m_s = cfg.stall_minutes * 60, cfg.offline_minutes * 60
        self._event(d, "assigned")
        self._event(d, "accepted")  # the rider taps Accept on the offer
        self._go(d.pickup)
        self._ride()
        if self.now >= self.end:
            return
        if kind == "wait_pickup":
            # Tapped "picked up" on arrival, then the order was not ready: in transit, inside the geofence.
            self._event(d, "picked_up")
            self._event(d, "en_route")
            start = self.now
            self._stay(rng.uniform(1.4, 1.8) * n_s, radius_m=15)
            self._episode(kind, d, start)
        else:
            self._stay(rng.uniform(0.2, 0.6) * n_s, radius_m=10)
            self._event(d, "picked_up")
            self._event(d, "en_route")
        self._go(d.dropoff)
        if kind in ("stall", "jam", "offline", "late_batch", "frozen"):
            self._ride(until_m=rng.uniform(*cfg.inject_after_m))
            if self.now >= self.end or self.rider.arrived():
                return
            self._inject(kind, d, n_s, m_s)
        self._ride()
        if self.now >= self.end:
            return
        # Silent phones arrive too: the truth is when the rider reached the door, whatever was sent.
        d.arrived_at = self.reached_at if self.reached_at is not None else self.now
        if kind == "wait_dropoff":
            # The customer took long to come down; "arrived" is tapped late: in transit, inside the geofence.
            start = self.now
            self._stay(rng.uniform(1.4, 1.8) * n_s, radius_m=15)
            self._episode(kind, d, start)
            self._event(d, "arrived")
        else:
            self._event(d, "arrived")
            self._stay(rng.uniform(0.2, 0.6) * n_s, radius_m=10)
        if self.now >= self.end:
            return
        self._event(d, "delivered")
        d.delivered_at = self.now

    def _inject(self, kind: str, d: SimDelivery, n_s: float, m_s: float) -> None:
        rng = self.rng
        start = self.now
        if kind == "stall":
            first = len(self.day.pings)
            self._stay(rng.uniform(1.5, 1.9) * n_s, radius_m=8)
            start = self.day.pings[first]["device_ts"]  # the first fix at the stop
        elif kind == "jam":
            crawl = rng.uniform(*self.config.jam_mps)
            self._ride(
                until_m=self.rider.travelled_m + rng.uniform(1.5, 1.9) * n_s * crawl,
                speed=crawl,
                lights=False,
            )
        elif kind == "offline":
            start = self.day.pings[-1]["device_ts"]  # the last fix before the silence
            self._silent(rng.uniform(1.5, 2.0) * m_s, ride=True)
        elif kind == "late_batch":
            start = self.day.pings[-1]["device_ts"]
            self._stay(rng.uniform(1.5, 1.9) * n_s, upload=False, radius_m=8)
            # Back online and riding; the stop's pings go up minutes later, after the offline alert.
            upload_at = self.now + int(rng.uniform(1.2, 1.6) * n_s * 1000)
            for ping in self.backlog:
                ping["upload_at"] = upload_at
            self.day.pings.extend(self.backlog)
            self.backlog = []
        elif kind == "frozen":
            first = len(self.day.pings)
            fix = self.rider.pos
            until = self.now + int(rng.uniform(*self.config.frozen_s) * 1000)
            while self.now < until and not self.rider.arrived():
                dt = self._tick()
                self._advance(dt, 1.2)
                self._ping(speed=7.5, fix=fix)  # the chip repeats itself; the speed sensor does not
            start = self.day.pings[first]["device_ts"] if len(self.day.pings) > first else self.now
        self._episode(kind, d, start)

    def _episode(self, kind: str, d: SimDelivery, start: int) -> None:
        expected = EXPECTED_ALERT.get(kind)
        episode = Episode(
            kind, self.day.driver_id, d.delivery_id, start, self.now, expected, self.now < self.end
        )
        self.day.episodes.append(episode)

    def run(self) -> DriverDay:
        n = 0
        while self.now < self.end:
            self.deliver(n)
            n += 1
            self._stay(self.rng.uniform(10, 30))  # between deliveries: no delivery active
        self.day.pings.sort(key=lambda p: (p["upload_at"], p["seq"]))
        return self.day


def _polar(distance_m: float, angle: float) -> tuple[float, float]:
    return distance_m * math.cos(angle), distance_m * math.sin(angle)


def simulate_deliveries(config: DeliverySimConfig) -> list[DriverDay]:
    """Simulate every driver's deliveries and episodes."""
    return [_DriverSim(config, i).run() for i in range(config.drivers)]


def history_pings(config: DeliverySimConfig, drivers: int, minutes: float) -> list[dict[str, Any]]:
    """Ride drivers without deliveries for ``minutes`` before the run: the history cell speeds learn from."""
    warm = DeliverySimConfig(
        drivers=drivers,
        minutes=minutes,
        interval_s=config.interval_s,
        start_ms=config.start_ms - int(minutes * 60_000),
        seed=config.seed + 1,
        center=config.center,
        radius_m=config.radius_m,
        driver_prefix=f"{config.driver_prefix}h",
        traffic_hour=config.traffic_hour,
    )
    pings: list[dict[str, Any]] = []
    for i in range(drivers):
        sim = _DriverSim(warm, i)
        while sim.now < sim.end:
            r = warm.radius_m * math.sqrt(sim.rng.random())
            a = sim.rng.uniform(0, 2 * math.pi)
            sim._go(_offset(*warm.center, r * math.cos(a), r * math.sin(a)))
            sim._ride()
        pings.extend(sim.day.pings)
    return pings


def past_deliveries(config: DeliverySimConfig, drivers: int, minutes: float) -> list[DriverDay]:
    """Simulate other drivers delivering in the ``minutes`` before the run, with the same episodes: what a
    worker that ran then saw (how long stops in transit lasted), as a worker in service has seen."""
    past = replace(
        config,
        drivers=drivers,
        minutes=minutes,
        start_ms=config.start_ms - int(minutes * 60_000),
        seed=config.seed + 2,
        driver_prefix=f"{config.driver_prefix}p",
    )
    return simulate_deliveries(past)
