"""Delivery state machine and one driver's live state: plain data, no I/O, packed small for a table.

A delivery moves ``assigned -> [accepted] -> picked_up -> (en_route <-> arrived) -> delivered | failed |
cancelled``; its driver may accept it (or go straight to the pickup) or decline it, which hands it back to
dispatch and ends it for this driver. A ``failed`` event names why (``FailureReason``). An
event that cannot apply is rejected with a ``Reason`` and changes nothing. A driver's state holds the fix it
was last seen at, its active deliveries, a few recently finished ones (so their status can still be read),
the ids of recent events (duplicates), the detectors' memory and the alerts still open. Everything in it is
bounded, so the packed state stays a few kilobytes however long the driver works.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import orjson

from streams.deliveries.stall import Movement, OpenAlert

MAX_ACTIVE = 16
MAX_FINISHED = 16
MAX_EVENT_HASHES = 256
FORMAT_VERSION = 1


class Status(StrEnum):
    """Where a delivery is in its life."""

    ASSIGNED = "assigned"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    PICKED_UP = "picked_up"
    EN_ROUTE = "en_route"
    ARRIVED = "arrived"
    DELIVERED = "delivered"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Reason(StrEnum):
    """Why a delivery event was rejected; each code has one meaning."""

    MALFORMED = "malformed"
    WRONG_KEY = "wrong_key"
    UNKNOWN_TYPE = "unknown_type"
    DUPLICATE_EVENT = "duplicate_event"
    UNKNOWN_DELIVERY = "unknown_delivery"
    ALREADY_ASSIGNED = "already_assigned"
    ALREADY_FINISHED = "already_finished"
    IMPOSSIBLE_TRANSITION = "impossible_transition"
    MISSING_LOCATION = "missing_location"
    TOO_MANY_ACTIVE = "too_many_active"
    NOT_OWNER = "not_owner"
    FUTURE_TS = "future_ts"
    TOO_OLD = "too_old"
    BAD_FAILURE_REASON = "bad_failure_reason"


class FailureReason(StrEnum):
    """Why a delivery failed at the door: the list a driver picks from."""

    NOT_HOME = "not_home"
    WRONG_ADDRESS = "wrong_address"
    REFUSED = "refused"
    DAMAGED = "damaged"
    OTHER = "other"


TERMINAL = frozenset({Status.DELIVERED, Status.FAILED, Status.CANCELLED, Status.DECLINED})
IN_TRANSIT = frozenset({Status.PICKED_UP, Status.EN_ROUTE})
_FINISH = frozenset({Status.FAILED, Status.CANCELLED})
ALLOWED: dict[Status, frozenset[Status]] = {
    Status.ASSIGNED: frozenset({Status.ACCEPTED, Status.DECLINED, Status.PICKED_UP}) | _FINISH,
    Status.ACCEPTED: frozenset({Status.PICKED_UP}) | _FINISH,
    Status.PICKED_UP: frozenset({Status.EN_ROUTE, Status.ARRIVED, Status.DELIVERED}) | _FINISH,
    Status.EN_ROUTE: frozenset({Status.ARRIVED, Status.DELIVERED}) | _FINISH,
    # A driver at the wrong door may set off again.
    Status.ARRIVED: frozenset({Status.EN_ROUTE, Status.DELIVERED}) | _FINISH,
}


@dataclass(frozen=True, slots=True)
class Rejection:
    """A delivery event that was not applied, and why."""

    reason: Reason
    detail: str


@dataclass(slots=True)
class Delivery:
    """One delivery as its driver's state holds it."""

    delivery_id: str
    status: str
    pickup: tuple[float, float]
    dropoff: tuple[float, float]
    promised_at: int | None
    customer_ref: str | None
    assigned_at: int
    updated_at: int
    eta: int | None = None
    eta_at: int | None = None  # when the last emitted ETA was computed
    eta_first: int | None = None  # the first ETA given, for the error at delivery
    late_alerted: bool = False
    arrived_at: int | None = None  # event time of the first arrived or delivered event
    picked_up_at: int | None = None  # event time of the pickup: a stall only counts from then
    owner: str | None = None  # API key fingerprint that assigned it: a partner reads only its own
    # Seconds (ms) of long hold-ups in transit that ended while carrying it: waits the dwell accounts for.
    held_ms: int = 0
    # Riding time of the ETAs published along the learned cells, before calibration: [computed at, riding ms,
    # held_ms then, class of the drop-off's direction or -1].
    rides: list[list[int]] = field(default_factory=list)
    # What the order system said for the driver's messages (assigned events); none of it leaves the state.
    pickup_address: str | None = None
    dropoff_address: str | None = None
    customer_name: str | None = None
    accepted_at: int | None = None
    failure_reason: str | None = None

    def public(self) -> dict[str, Any]:
        """Return the delivery as the dispatcher API shows it in a driver's active deliveries."""
        return {
            "delivery_id": self.delivery_id,
            "status": self.status,
            "pickup": {"lat": self.pickup[0], "lon": self.pickup[1]},
            "dropoff": {"lat": self.dropoff[0], "lon": self.dropoff[1]},
            "promised_at": self.promised_at,
            "eta": self.eta,
            "customer_ref": self.customer_ref,
            "pickup_address": self.pickup_address,
            "dropoff_address": self.dropoff_address,
            "customer_first_name": first_name(self.customer_name),
            "assigned_at": self.assigned_at,
            "accepted_at": self.accepted_at,
            "failure_reason": self.failure_reason,
        }


@dataclass(slots=True)
class LastFix:
    """The driver's newest accepted position."""

    ts: int
    lat: float
    lon: float
    h3_r9: int
    accuracy_m: float | None
    speed_mps: float | None


def first_name(name: str | None) -> str | None:
    """Return the first word of a person's name (all a driver is shown of a customer)."""
    words = (name or "").split()
    return words[0] if words else None


def event_hash(event_id: str) -> int:
    """Return a stable 63-bit hash of an event id."""
    return int.from_bytes(hashlib.blake2b(event_id.encode(), digest_size=8).digest(), "little") >> 1


@dataclass(slots=True)
class DriverState:
    """Everything the pipeline keeps live about one driver."""

    last_fix: LastFix | None = None
    last_update: int | None = None
    deliveries: dict[str, Delivery] = field(default_factory=dict)
    finished: list[Delivery] = field(default_factory=list)  # newest last
    event_hashes: list[int] = field(default_factory=list)  # newest last
    offsets: dict[str, int] = field(default_factory=dict)  # source topic tag -> last applied offset
    movement: Movement = field(default_factory=Movement)
    alerts: dict[str, OpenAlert] = field(default_factory=dict)  # open alerts by kind
    recent: list[Any] = field(default_factory=lambda: [0.0, 0.0, None])  # recent speed, evidence s, last ts
    stop: list[Any] | None = None  # eta.Stop's fields, in order: where the driver stays, since when
    pace: list[float] = field(
        default_factory=lambda: [1.0, 0.0]
    )  # eta.Pace: over the cells' speeds, evidence s

    def status(self) -> str:
        """Return idle, on_delivery, stalled or offline (the most urgent wins)."""
        if "offline" in self.alerts:
            return "offline"
        if "stall" in self.alerts:
            return "stalled"
        return "on_delivery" if self.deliveries else "idle"

    def in_transit(self) -> Delivery | None:
        """Return the delivery the driver is carrying now (earliest promise first), if any."""
        carried = [d for d in self.deliveries.values() if d.status in IN_TRANSIT]
        return min(carried, key=lambda d: (d.promised_at or 2**62, d.delivery_id)) if carried else None

    def find(self, delivery_id: str) -> Delivery | None:
        """Return an active or recently finished delivery."""
        found = self.deliveries.get(delivery_id)
        if found is None:
            found = next((d for d in reversed(self.finished) if d.delivery_id == delivery_id), None)
        return found

    def pack(self) -> bytes:
        """Serialize compactly for the table and its changelog."""
        movement = self.movement
        data = {
            "v": FORMAT_VERSION,
            "last_fix": _fields(self.last_fix) if self.last_fix else None,
            "last_update": self.last_update,
            "deliveries": {k: _fields(d) for k, d in self.deliveries.items()},
            "finished": [_fields(d) for d in self.finished],
            "event_hashes": self.event_hashes,
            "offsets": self.offsets,
            "movement": {**_fields(movement), "windows": [_fields(w) for w in movement.windows]},
            "alerts": {k: _fields(a) for k, a in self.alerts.items()},
            "recent": self.recent,
            "stop": self.stop,
            "pace": self.pace,
        }
        # orjson: the state is packed for every ping a batch applies, and json.dumps cost several times more.
        # It writes a non-finite float (which nothing stores on purpose) as null, read back as unknown.
        return orjson.dumps(data)

    @classmethod
    def unpack(cls, raw: bytes | None) -> DriverState:
        """Rebuild a state from ``pack``'s bytes; None gives a new driver's empty state."""
        if not raw:
            return cls()
        try:
            data = orjson.loads(raw)
        except orjson.JSONDecodeError:
            data = json.loads(raw)  # written by json.dumps, which spelled a non-finite float NaN or Infinity
        fix = data["last_fix"]
        return cls(
            last_fix=LastFix(**fix) if fix else None,
            last_update=data["last_update"],
            deliveries={k: _delivery(v) for k, v in data["deliveries"].items()},
            finished=[_delivery(v) for v in data["finished"]],
            event_hashes=data["event_hashes"],
            offsets=data["offsets"],
            movement=Movement.from_dict(data["movement"]),
            alerts={k: OpenAlert(**v) for k, v in data["alerts"].items()},
            recent=data.get("recent", [0.0, 0.0, None]),
            stop=data.get("stop"),
            pace=data.get("pace", [1.0, 0.0]),
        )


def _fields(obj: Any) -> dict[str, Any]:
    # dataclasses.asdict deep-copies every value: ten times slower on the hot path than reading the slots.
    return {name: getattr(obj, name) for name in obj.__slots__}


def _delivery(data: dict[str, Any]) -> Delivery:
    return Delivery(**{**data, "pickup": tuple(data["pickup"]), "dropoff": tuple(data["dropoff"])})


def _point(event: dict[str, Any], kind: str) -> tuple[float, float] | None:
    lat, lon = event.get(f"{kind}_lat"), event.get(f"{kind}_lon")
    return None if lat is None or lon is None else (float(lat), float(lon))


def check_event(
    state: DriverState, event: dict[str, Any], partners: frozenset[str] = frozenset()
) -> Rejection | None:
    """Return why ``event`` cannot apply to the driver's state, or None when it can.

    ``partners`` are the fingerprints of keys that post only as a partner: such a key moves only the
    deliveries it assigned itself.
    """
    kind, delivery_id = event["type"], event["delivery_id"]
    if event_hash(event["event_id"]) in state.event_hashes:
        return Rejection(Reason.DUPLICATE_EVENT, f"event {event['event_id']} was already applied")
    if kind not in Status.__members__.values():
        return Rejection(Reason.UNKNOWN_TYPE, f"event type {kind!r} is not a delivery step")
    current = state.find(delivery_id)
    if kind == Status.ASSIGNED:
        if current is not None:
            return Rejection(Reason.ALREADY_ASSIGNED, f"delivery {delivery_id} is already {current.status}")
        if _point(event, "pickup") is None or _point(event, "dropoff") is None:
            return Rejection(Reason.MISSING_LOCATION, "an assignment needs pickup and dropoff lat/lon")
        if len(state.deliveries) >= MAX_ACTIVE:
            return Rejection(Reason.TOO_MANY_ACTIVE, f"driver already carries {MAX_ACTIVE} deliveries")
        return None
    if current is None:
        return Rejection(Reason.UNKNOWN_DELIVERY, f"delivery {delivery_id} was never assigned to this driver")
    principal = event.get("principal")
    if principal in partners and current.owner != principal:
        return Rejection(Reason.NOT_OWNER, f"delivery {delivery_id} was not assigned by this partner key")
    if current.status in TERMINAL:
        return Rejection(Reason.ALREADY_FINISHED, f"delivery {delivery_id} is already {current.status}")
    if kind not in ALLOWED[Status(current.status)]:
        return Rejection(Reason.IMPOSSIBLE_TRANSITION, f"{current.status} -> {kind} is not a delivery step")
    reason = event.get("failure_reason")
    if reason is not None and (kind != Status.FAILED or reason not in FailureReason.__members__.values()):
        allowed = ", ".join(FailureReason)
        return Rejection(
            Reason.BAD_FAILURE_REASON, f"failure_reason {reason!r}: only on failed, one of {allowed}"
        )
    return None


def apply_event(
    state: DriverState, event: dict[str, Any], partners: frozenset[str] = frozenset()
) -> Rejection | Delivery:
    """Apply a delivery event to the driver's state; return the updated delivery or why it was rejected."""
    rejection = check_event(state, event, partners)
    if rejection is not None:
        return rejection
    state.event_hashes.append(event_hash(event["event_id"]))
    del state.event_hashes[:-MAX_EVENT_HASHES]
    ts = int(event["ts"])
    state.last_update = max(state.last_update or ts, ts)
    if event["type"] == Status.ASSIGNED:
        pickup, dropoff = _point(event, "pickup"), _point(event, "dropoff")
        assert pickup is not None and dropoff is not None  # check_event made sure
        delivery = Delivery(
            delivery_id=event["delivery_id"],
            status=Status.ASSIGNED,
            pickup=pickup,
            dropoff=dropoff,
            promised_at=event.get("promised_at"),
            customer_ref=event.get("customer_ref"),
            assigned_at=ts,
            updated_at=ts,
            owner=event.get("principal"),
            pickup_address=event.get("pickup_address"),
            dropoff_address=event.get("dropoff_address"),
            customer_name=event.get("customer_name"),
        )
        state.deliveries[delivery.delivery_id] = delivery
        return delivery
    delivery = state.deliveries[event["delivery_id"]]
    delivery.status = event["type"]
    delivery.updated_at = ts
    if delivery.status == Status.ACCEPTED:
        delivery.accepted_at = ts
    if delivery.status == Status.PICKED_UP:
        delivery.picked_up_at = ts
    if delivery.status == Status.FAILED:
        delivery.failure_reason = event.get("failure_reason") or FailureReason.OTHER
    if delivery.status in (Status.ARRIVED, Status.DELIVERED) and delivery.arrived_at is None:
        delivery.arrived_at = ts
    if event.get("promised_at") is not None:
        delivery.promised_at = event["promised_at"]
    if delivery.status in TERMINAL:
        del state.deliveries[delivery.delivery_id]
        state.finished.append(delivery)
        del state.finished[:-MAX_FINISHED]
    return delivery
