"""The fleet's traffic, planned ahead: what every phone and the order system send, and when. Pure: no I/O.

Each driver lives the delivery simulator's day (``simulator/deliveries.py``): assigned, to the
pickup, picked up, en route, arrived, delivered, the next assignment; with its episodes (stalls, jams, phones
offline, stops uploaded late, frozen GPS). On top of it the phone: a fix every ``fix_s``, an upload of what
it holds every ``upload_s`` (at a phase of its own), and the faults of real phones in the shares the phone
simulator uses (``simulator/model.Faults``): a ping sent again in the next upload, a GPS spike,
(0, 0), poor accuracy, a clock hours ahead, the GPS week rollover, a late backlog uploaded twice.

Times are planned relative to the run's start (0) and become epoch milliseconds only when the bodies are
rendered (``render``), just before the run, so planning may take as long as it takes.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from simulator.deliveries import DeliverySimConfig, DriverDay, _DriverSim
from simulator.model import ROLLOVER_MS, Faults

PINGS = "pings"
EVENTS = "events"
MAX_BACKLOG_BATCH = 100
# A ping: (ping_id, device_ts, lat, lon, accuracy_m, speed_mps, seq), times relative to the run's start.
Ping = tuple[str, int, float, float, float, float | None, int]


@dataclass(frozen=True)
class FleetConfig:
    """A fleet of drivers each carrying deliveries, and how their phones behave."""

    drivers: int = 20_000
    minutes: float = 12.0
    fix_s: float = 5.0
    upload_s: float = 15.0
    seed: int = 11
    prefix: str = "fleet"
    traffic_hour: int = 13
    faults: Faults = field(default_factory=Faults)

    @property
    def pings_per_s(self) -> float:
        """The fixes the fleet takes per second."""
        return self.drivers / self.fix_s

    def driver_id(self, index: int) -> str:
        """Return the id of driver ``index``: the delivery simulator's naming."""
        return f"{self.prefix}-{index:05d}"


@dataclass(slots=True)
class Upload:
    """One request the fleet sends: a phone's batch of pings, or the order system's delivery event."""

    due_ms: int
    kind: str
    driver: int
    pings: list[Ping] = field(default_factory=list)
    event: dict[str, Any] | None = None


def _day(config: FleetConfig, index: int) -> DriverDay:
    sim_config = DeliverySimConfig(
        drivers=config.drivers,
        minutes=config.minutes,
        interval_s=config.fix_s,
        start_ms=0,
        seed=config.seed,
        driver_prefix=config.prefix,
        traffic_hour=config.traffic_hour,
    )
    return _DriverSim(sim_config, index).run()


def _phone_ping(rng: random.Random, faults: Faults, ping: dict[str, Any]) -> Ping:
    """The fix as the phone reports it, with at most one fault of a single ping."""
    ts, lat, lon, accuracy = ping["device_ts"], ping["lat"], ping["lon"], ping["accuracy_m"]
    draw = rng.random()
    for share, fault in (
        (faults.spike, "spike"),
        (faults.null_island, "null_island"),
        (faults.low_accuracy, "low_accuracy"),
        (faults.future_clock, "future_clock"),
        (faults.rollover, "rollover"),
    ):
        if draw < share:
            if fault == "spike":
                lat += rng.choice((-1, 1)) * rng.uniform(0.03, 0.06)  # 3 to 7 km away, for one fix
            elif fault == "null_island":
                lat, lon = 0.0, 0.0
            elif fault == "low_accuracy":
                accuracy = round(rng.uniform(150, 900), 1)
            elif fault == "future_clock":
                ts += rng.randint(2, 10) * 3_600_000
            else:
                ts -= ROLLOVER_MS
            break
        draw -= share
    return (ping["ping_id"], ts, lat, lon, accuracy, ping["speed_mps"], ping["seq"])


def plan_driver(config: FleetConfig, index: int) -> Iterator[Upload]:
    """Yield one driver's requests, in no particular order."""
    day = _day(config, index)
    rng = random.Random(config.seed * 7_919 + index)
    faults = config.faults
    period = int(config.upload_s * 1000)
    phase = rng.randrange(period)
    end = int(config.minutes * 60_000)
    # Each ping goes up with the first upload at or after the moment the phone can send it.
    by_upload: dict[int, list[Ping]] = {}
    for ping in day.pings:
        ready = ping["upload_at"]
        slot = phase + max(0, -(-(ready - phase) // period)) * period
        if slot > end:
            continue
        phone_ping = _phone_ping(rng, faults, ping)
        by_upload.setdefault(slot, []).append(phone_ping)
        if rng.random() < faults.duplicate:
            by_upload.setdefault(slot + period, []).append(phone_ping)  # no answer came: sent again
    for slot, pings in sorted(by_upload.items()):
        for start in range(0, len(pings), MAX_BACKLOG_BATCH):
            chunk = pings[start : start + MAX_BACKLOG_BATCH]
            yield Upload(slot, PINGS, index, chunk)
            if len(pings) > MAX_BACKLOG_BATCH // 4 and rng.random() < faults.replay:
                yield Upload(slot + period, PINGS, index, chunk)  # a backlog batch uploaded twice
    for event in day.events:
        if event["upload_at"] <= end:
            yield Upload(event["upload_at"], EVENTS, index, event=event)


def plan(config: FleetConfig, drivers: range | None = None) -> list[Upload]:
    """Plan every request of the fleet (or of ``drivers``), sorted by the time it is due."""
    uploads = [u for i in drivers or range(config.drivers) for u in plan_driver(config, i)]
    uploads.sort(key=lambda u: u.due_ms)
    return uploads


def ping_body(pings: list[Ping], start_ms: int) -> bytes:
    """Render a phone's ``POST /v1/pings`` body with times on the run's clock."""
    return json.dumps(
        {
            "pings": [
                {
                    "ping_id": ping_id,
                    "ts": start_ms + ts,
                    "lat": lat,
                    "lon": lon,
                    "accuracy_m": accuracy,
                    "speed_mps": speed,
                    "seq": seq,
                }
                for ping_id, ts, lat, lon, accuracy, speed, seq in pings
            ]
        },
        separators=(",", ":"),
    ).encode()


def event_body(event: dict[str, Any], start_ms: int) -> bytes:
    """Render a ``POST /v1/deliveries/events`` body with times on the run's clock."""
    document = {k: v for k, v in event.items() if k not in ("upload_at", "source")}
    document["ts"] = start_ms + event["ts"]
    if event.get("promised_at") is not None:
        document["promised_at"] = start_ms + event["promised_at"]
    return json.dumps(document, separators=(",", ":")).encode()
