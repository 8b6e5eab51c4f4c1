"""Driver phones riding motorcycles through a city, with the faults real phones have. Pure: no I/O.

Each driver produces pings as its phone would upload them: live batches, offline gaps whose backlog is
uploaded later (sometimes shuffled, sometimes twice), duplicates, GPS spikes, real relocations with the
phone off, broken clocks, (0, 0) fixes and poor accuracy. Every ping carries the verdict the cleaning rules
must reach (``expected``), so a run is its own ground truth.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

SAO_PAULO = (-23.5505, -46.6333)
LOCAL_OFFSET_MS = -3 * 3_600_000  # São Paulo keeps UTC-3 all year: the hour of day its traffic follows
M_PER_DEG = 111_195.0
STATELESS_FAULTS = {
    "null_island": "null_island",
    "low_accuracy": "low_accuracy",
    "future_clock": "future_timestamp",
    "rollover": "gps_week_rollover",
}
ROLLOVER_MS = 7168 * 86_400_000


@dataclass(frozen=True)
class Faults:
    """How often each fault happens: per ping, or per driver for the episodes."""

    duplicate: float = 0.02
    spike: float = 0.004
    null_island: float = 0.003
    low_accuracy: float = 0.004
    future_clock: float = 0.002
    rollover: float = 0.002
    offline: float = 0.4  # per driver: one offline gap whose backlog is uploaded later
    shuffle: float = 0.5  # per backlog: uploaded out of order
    replay: float = 0.3  # per backlog: one of its batches uploaded again at the end
    relocation: float = 0.1  # per driver: carried far with the phone off
    too_old: float = 0.1  # per driver: a few pings from more than a day ago
    lost: float = 0.0  # per ping of a backlog: never uploaded, leaving a hole in the seq numbers

    @classmethod
    def none(cls) -> Faults:
        return cls(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


@dataclass(frozen=True)
class SimConfig:
    """A simulated fleet: how many drivers, for how long, how often they ping, where."""

    drivers: int = 50
    minutes: float = 30.0
    interval_s: float = 5.0
    end_ms: int = 0
    center: tuple[float, float] = SAO_PAULO
    radius_m: float = 12_000.0
    batch_size: int = 12
    backlog_batch_size: int = 100
    max_gap_ticks: int = 100  # the longest offline gap, in pings (also at most a quarter of the run)
    seed: int = 1
    faults: Faults = field(default_factory=Faults)
    driver_prefix: str = "sim"


@dataclass
class SimPing:
    """One upload of one ping, with the verdict the pipeline must reach for it."""

    payload: dict[str, Any]
    expected: str
    fault: str = "none"


@dataclass
class DriverRun:
    """A driver's uploads, in the order its phone sends them."""

    driver_id: str
    uploads: list[list[SimPing]]

    def pings(self) -> list[SimPing]:
        return [p for upload in self.uploads for p in upload]


def _offset(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return lat + north_m / M_PER_DEG, lon + east_m / (M_PER_DEG * math.cos(math.radians(lat)))


class _Rider:
    """Ground-truth motion: ride to a waypoint at a motorcycle's speed, stop a while, ride on."""

    def __init__(self, rng: random.Random, config: SimConfig) -> None:
        self.rng, self.config = rng, config
        self.lat, self.lon = self._random_point()
        self.target = self._random_point()
        self.speed = rng.uniform(5.0, 14.0)
        self.pause_s = 0.0

    def _random_point(self) -> tuple[float, float]:
        r = self.config.radius_m * math.sqrt(self.rng.random())
        a = self.rng.uniform(0, 2 * math.pi)
        return _offset(*self.config.center, r * math.cos(a), r * math.sin(a))

    def advance(self, dt_s: float) -> None:
        if self.pause_s > 0:
            self.pause_s -= dt_s
            return
        north = (self.target[0] - self.lat) * M_PER_DEG
        east = (self.target[1] - self.lon) * M_PER_DEG * math.cos(math.radians(self.lat))
        remaining = math.hypot(north, east)
        step = self.speed * dt_s
        if step >= remaining:
            self.lat, self.lon = self.target
            self.target = self._random_point()
            self.speed = self.rng.uniform(5.0, 14.0)
            self.pause_s = self.rng.uniform(30, 120)  # a pickup or a drop-off
        else:
            self.lat, self.lon = _offset(
                self.lat, self.lon, north * step / remaining, east * step / remaining
            )

    def relocate(self) -> None:
        distance = self.rng.uniform(6000, 10000)
        a = self.rng.uniform(0, 2 * math.pi)
        self.lat, self.lon = _offset(self.lat, self.lon, distance * math.cos(a), distance * math.sin(a))
        self.target = self._random_point()


def _fix(rng: random.Random, rider: _Rider, ts: int, seq: int, driver_id: str) -> dict[str, Any]:
    accuracy = round(rng.uniform(3.0, 15.0), 1)
    sigma = accuracy / 2
    lat, lon = _offset(rider.lat, rider.lon, rng.gauss(0, sigma), rng.gauss(0, sigma))
    return {
        "ping_id": f"{driver_id}:{seq}",
        "ts": ts,
        "lat": round(lat, 7),
        "lon": round(lon, 7),
        "accuracy_m": accuracy,
        "speed_mps": None if rider.pause_s > 0 else round(rider.speed, 2),
        "heading": None,
        "battery": round(rng.uniform(15, 100), 0),
        "seq": seq,
    }


def _stateless_fault(rng: random.Random, faults: Faults, payload: dict[str, Any], end_ms: int) -> str | None:
    roll = rng.random()
    for name in ("null_island", "low_accuracy", "future_clock", "rollover"):
        rate = getattr(faults, name)
        if roll < rate:
            if name == "null_island":
                payload["lat"], payload["lon"] = 0.0, 0.0
            elif name == "low_accuracy":
                payload["accuracy_m"] = round(rng.uniform(150, 900), 1)
            elif name == "future_clock":
                payload["ts"] = end_ms + int(rng.uniform(600_000, 3 * 3_600_000))  # a clock hours ahead
            else:
                payload["ts"] -= ROLLOVER_MS
            return name
        roll -= rate
    return None


def _duplicate_of(original: SimPing) -> SimPing:
    # A replayed bad ping is judged by the same stateless rule again; anything else is a duplicate.
    expected = original.expected if original.expected in STATELESS_FAULTS.values() else "duplicate"
    return SimPing(dict(original.payload), expected, "duplicate")


def simulate_driver(config: SimConfig, index: int) -> DriverRun:
    """Ride one driver through the simulated period and return its uploads with their verdicts."""
    rng = random.Random(config.seed * 1_000_003 + index)
    faults = config.faults
    driver_id = f"{config.driver_prefix}-{index:05d}"
    rider = _Rider(rng, config)
    start = config.end_ms - int(config.minutes * 60_000)
    ticks = int(config.minutes * 60 / config.interval_s)

    gap: tuple[int, int] | None = None
    if ticks > 60 and rng.random() < faults.offline:
        g0 = rng.randint(ticks // 5, ticks // 2)
        gap = (g0, g0 + rng.randint(20, min(config.max_gap_ticks, ticks // 4)))
    relocation_at = rng.randint(10, ticks - 5) if ticks > 30 and rng.random() < faults.relocation else -1
    if gap and gap[0] - 12 <= relocation_at <= gap[1] + 40:
        relocation_at = -1  # keep a relocation clear of the offline episode

    live: list[SimPing] = []
    backlog: list[SimPing] = []
    seq, quiet, last_spike, last_live_tick = 0, 0, -10, -10
    ts = start
    for tick in range(ticks):
        dt = config.interval_s * rng.uniform(0.9, 1.1)
        ts += int(dt * 1000)
        rider.advance(dt)
        if tick == relocation_at:
            rider.relocate()  # the phone was off while the driver crossed town
            quiet = 2  # the next fix is unexplained, the one after confirms the new place
            continue
        payload = _fix(rng, rider, ts, seq, driver_id)
        seq += 1
        in_gap = gap is not None and gap[0] <= tick < gap[1]
        if in_gap and faults.lost and rng.random() < faults.lost:
            continue  # the phone dropped it: its seq stays a hole for good
        sim = SimPing(payload, "clean")
        if quiet == 2:
            sim.expected, sim.fault = "implausible_speed", "relocation"
        elif (
            quiet == 0
            and not in_gap
            and tick == last_live_tick + 1
            and tick > 5
            and tick - last_spike > 2
            and rng.random() < faults.spike
        ):
            # A spike is judged against the live position one interval earlier: never across a gap.
            distance = max(3000.0, 120 * config.interval_s) * rng.uniform(1.0, 2.0)
            a = rng.uniform(0, 2 * math.pi)
            payload["lat"], payload["lon"] = _offset(
                payload["lat"], payload["lon"], distance * math.cos(a), distance * math.sin(a)
            )
            sim.expected, sim.fault, last_spike = "implausible_speed", "spike", tick
        elif quiet == 0 and tick - last_spike > 1:
            fault = _stateless_fault(rng, faults, payload, config.end_ms)
            if fault is not None:
                sim.expected, sim.fault = STATELESS_FAULTS[fault], fault
        quiet = max(0, quiet - 1)
        target = backlog if in_gap else live
        if not in_gap:
            last_live_tick = tick
        target.append(sim)
        if sim.fault not in ("spike", "relocation") and rng.random() < faults.duplicate:
            target.append(_duplicate_of(sim))

    uploads = [live[i : i + config.batch_size] for i in range(0, len(live), config.batch_size)]
    if backlog:
        # Phones send live pings first after reconnecting, then the backlog: it arrives late.
        reconnect = sum(1 for p in live if p.payload["ts"] < backlog[-1].payload["ts"])
        insert_at = min(len(uploads), reconnect // config.batch_size + 2)
        if rng.random() < faults.shuffle:
            rng.shuffle(backlog)
        size = config.backlog_batch_size
        batches = [backlog[i : i + size] for i in range(0, len(backlog), size)]
        uploads[insert_at:insert_at] = batches
        if rng.random() < faults.replay:
            uploads.append([_duplicate_of(p) for p in rng.choice(batches)])
    if rng.random() < faults.too_old:
        old_ts = config.end_ms - 30 * 3_600_000
        uploads.append(
            [
                SimPing(
                    {
                        **_fix(rng, rider, old_ts + i * 5000, 0, driver_id),
                        "ping_id": f"{driver_id}:old{i}",
                        "seq": None,
                    },
                    "too_old",
                    "too_old",
                )
                for i in range(3)
            ]
        )
    return DriverRun(driver_id, [u for u in uploads if u])


def simulate(config: SimConfig) -> list[DriverRun]:
    """Simulate every driver of the fleet."""
    return [simulate_driver(config, i) for i in range(config.drivers)]
