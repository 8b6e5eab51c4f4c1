"""The fleet at a glance: one row per driver, kept from the driver states, filtered and paged (pure).

A row is what a dispatcher scans a list or a map for: the driver's console status, last fix, the H3 res-7
cell it lies in, the delivery in hand, and the open alerts. Pages are ordered by urgency (offline, stalled,
moving, idle), then by driver id, and continue from an opaque cursor that holds the last row's place, so a
driver changing status between two pages is never shown twice on one walk through the list.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import h3

from streams.deliveries.state import IN_TRANSIT, TERMINAL, DriverState, Status

STATUSES = ("offline", "stalled", "moving", "idle")  # most urgent first: the order of a page
_RANK = {status: rank for rank, status in enumerate(STATUSES)}
MAX_LIMIT = 500
DEFAULT_LIMIT = 100
CELL_RESOLUTION = 7
NO_PROMISE = 2**62
ACTIVE_STATUSES = tuple(s.value for s in Status if s not in TERMINAL)


class QueryError(ValueError):
    """A query parameter is malformed or out of range; ``param`` names it for the 400 answer."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(f"{param}: {message}")
        self.param = param


def console_status(state: DriverState) -> str:
    """Return offline, stalled, moving or idle: the open alerts first, then whether the driver keeps still."""
    if "offline" in state.alerts:
        return "offline"
    if "stall" in state.alerts:
        return "stalled"
    if state.last_fix is None or state.movement.still_since is not None:
        return "idle"
    return "moving"


def cell_of(h3_r9: int) -> str | None:
    """Return the res-7 cell (hex string) holding a res-9 cell given as an integer; None if it is none."""
    try:
        cell = h3.int_to_str(h3_r9)
    except (ValueError, OverflowError):  # negative: an H3 index is unsigned
        return None
    if not h3.is_valid_cell(cell) or h3.get_resolution(cell) < CELL_RESOLUTION:
        return None  # a record of another producer, or damaged: the driver is still listed
    return str(h3.cell_to_parent(cell, CELL_RESOLUTION))


@dataclass(frozen=True, slots=True)
class DriverRow:
    """One driver as the console lists it."""

    driver_id: str
    status: str
    cell: str | None
    last_fix: dict[str, Any] | None
    delivery: dict[str, Any] | None  # the one in hand, else the next one assigned
    deliveries: tuple[dict[str, Any], ...]
    open_alerts: tuple[dict[str, Any], ...]
    updated_at: int | None

    @property
    def key(self) -> tuple[int, str]:
        """Return the row's place in a page's order."""
        return _RANK[self.status], self.driver_id

    def public(self) -> dict[str, Any]:
        """Return the row as the API shows it."""
        return {
            "driver_id": self.driver_id,
            "status": self.status,
            "cell": self.cell,
            "last_fix": self.last_fix,
            "delivery": self.delivery,
            "deliveries": list(self.deliveries),
            "open_alerts": list(self.open_alerts),
            "last_update": self.updated_at,
        }


def row_of(driver_id: str, state: DriverState) -> DriverRow:
    """Summarize a driver's live state as a console row."""
    fix = state.last_fix
    active = sorted(state.deliveries.values(), key=lambda d: (d.promised_at or NO_PROMISE, d.delivery_id))
    in_hand = state.in_transit() or next((d for d in active if d.status not in IN_TRANSIT), None)
    return DriverRow(
        driver_id=driver_id,
        status=console_status(state),
        cell=cell_of(fix.h3_r9) if fix else None,
        last_fix=None
        if fix is None
        else {"lat": fix.lat, "lon": fix.lon, "ts": fix.ts, "h3_r9": fix.h3_r9, "accuracy_m": fix.accuracy_m},
        delivery=in_hand.public() if in_hand else None,
        deliveries=tuple(d.public() for d in active),
        open_alerts=tuple(
            {"alert_id": a.alert_id, "kind": a.kind, "started_at": a.started_at}
            for a in sorted(state.alerts.values(), key=lambda a: a.started_at)
        ),
        updated_at=state.last_update,
    )


def encode_cursor(key: tuple[int, str]) -> str:
    """Return an opaque cursor that continues a walk after the row at ``key``."""
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """Return the place a cursor holds; a cursor not made by ``encode_cursor`` raises QueryError."""
    try:
        number, name = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise QueryError("cursor", "not a cursor this API returned") from exc
    if type(number) is not int or not isinstance(name, str):
        raise QueryError("cursor", "not a cursor this API returned")
    return number, name


def check_known(params: Mapping[str, str], known: Iterable[str]) -> None:
    """Refuse a parameter the route does not know, so a misspelled filter is not silently ignored."""
    for name in params:
        if name not in known:
            raise QueryError(name, f"unknown parameter; known: {', '.join(sorted(known))}")


def page_of(candidates: Iterable[Any], key: Any, limit: int) -> tuple[list[Any], str | None]:
    """Return the first ``limit`` candidates in ``key`` order and the cursor after them (None: no more)."""
    chosen = heapq.nsmallest(limit + 1, candidates, key=key)
    rows = chosen[:limit]
    return rows, encode_cursor(key(rows[-1])) if len(chosen) > limit else None


def parse_limit(raw: str | None) -> int:
    """Return a page size from 1 to MAX_LIMIT (DEFAULT_LIMIT when absent)."""
    if raw is None or raw == "":
        return DEFAULT_LIMIT
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6) or not 1 <= int(raw) <= MAX_LIMIT:
        raise QueryError("limit", f"a whole number from 1 to {MAX_LIMIT}")
    return int(raw)


def parse_choices(param: str, raw: str | None, allowed: Iterable[str]) -> frozenset[str]:
    """Return the comma-separated values of ``param``, each one of ``allowed`` (empty: no filter)."""
    if not raw:
        return frozenset()
    values = frozenset(v.strip() for v in raw.split(","))
    unknown = sorted(values - set(allowed))
    if unknown:
        raise QueryError(
            param, f"unknown value(s) {', '.join(map(repr, unknown))}; one of {', '.join(allowed)}"
        )
    return values


def parse_cell(raw: str | None) -> str | None:
    """Return a res-7 H3 cell given in hex, or None when absent."""
    if not raw:
        return None
    if not h3.is_valid_cell(raw) or h3.get_resolution(raw) != CELL_RESOLUTION:
        raise QueryError("cell", f"an H3 cell of resolution {CELL_RESOLUTION} in hex, like 87a8100c0ffffff")
    return raw.lower()


@dataclass(frozen=True)
class DriverQuery:
    """What ``GET /v1/drivers`` asks for."""

    statuses: frozenset[str] = frozenset()
    cell: str | None = None
    prefix: str = ""
    limit: int = DEFAULT_LIMIT
    after: tuple[int, str] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> DriverQuery:
        """Read the query string; a bad parameter raises QueryError naming it."""
        check_known(params, ("status", "cell", "q", "limit", "cursor"))
        cursor = params.get("cursor")
        after = decode_cursor(cursor) if cursor else None
        if after is not None and not 0 <= after[0] < len(STATUSES):
            raise QueryError("cursor", "not a cursor this API returned")
        return cls(
            statuses=parse_choices("status", params.get("status"), STATUSES),
            cell=parse_cell(params.get("cell")),
            prefix=params.get("q", ""),
            limit=parse_limit(params.get("limit")),
            after=after,
        )

    def admits(self, row: DriverRow) -> bool:
        """Tell whether a row passes the filters (not the cursor)."""
        return (
            (not self.statuses or row.status in self.statuses)
            and (self.cell is None or row.cell == self.cell)
            and row.driver_id.startswith(self.prefix)
        )


def is_late(delivery: Mapping[str, Any], now_ms: int) -> bool:
    """Tell whether a delivery will miss its promise: the ETA is past it, or the promise has passed."""
    promised = delivery.get("promised_at")
    if promised is None:
        return False
    eta = delivery.get("eta")
    return now_ms > promised or (eta is not None and eta > promised)


def delivery_key(delivery: Mapping[str, Any]) -> tuple[int, str]:
    """Return a delivery's place in a page: soonest promise first, deliveries without one last."""
    promised = delivery.get("promised_at")
    return (promised if promised is not None else NO_PROMISE), str(delivery["delivery_id"])


@dataclass(frozen=True)
class DeliveryQuery:
    """What ``GET /v1/deliveries`` asks for."""

    statuses: frozenset[str] = frozenset()
    late: bool | None = None
    driver: str | None = None
    limit: int = DEFAULT_LIMIT
    after: tuple[int, str] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> DeliveryQuery:
        """Read the query string; a bad parameter raises QueryError naming it."""
        check_known(params, ("status", "late", "driver", "limit", "cursor"))
        late = params.get("late")
        if late not in (None, "", "true", "false"):
            raise QueryError("late", "true or false")
        cursor = params.get("cursor")
        return cls(
            statuses=parse_choices("status", params.get("status"), ACTIVE_STATUSES),
            late=None if not late else late == "true",
            driver=params.get("driver") or None,
            limit=parse_limit(params.get("limit")),
            after=decode_cursor(cursor) if cursor else None,
        )

    def admits(self, delivery: Mapping[str, Any], now_ms: int) -> bool:
        """Tell whether a delivery passes the filters (not the cursor)."""
        return (not self.statuses or delivery["status"] in self.statuses) and (
            self.late is None or is_late(delivery, now_ms) == self.late
        )


@dataclass
class Fleet:
    """Every driver's row, replaced as the driver's state changes."""

    rows: dict[str, DriverRow] = field(default_factory=dict)

    def apply(self, driver_id: str, state: DriverState | None) -> None:
        """Take a driver's new state; None (a deleted state) removes the driver."""
        if state is None:
            self.rows.pop(driver_id, None)
        else:
            self.rows[driver_id] = row_of(driver_id, state)

    def page(self, query: DriverQuery) -> tuple[list[DriverRow], str | None]:
        """Return the rows of one page, in order, and the cursor of the next page (None on the last)."""
        after = query.after
        candidates = (r for r in self.rows.values() if query.admits(r) and (after is None or r.key > after))
        return page_of(candidates, lambda r: r.key, query.limit)

    def deliveries(self, query: DeliveryQuery, now_ms: int) -> tuple[list[dict[str, Any]], str | None]:
        """Return one page of active deliveries with their driver, ETA and promise, soonest promise first."""
        after = query.after
        candidates = (
            {**delivery, "driver_id": row.driver_id, "late": is_late(delivery, now_ms)}
            for row in self.rows.values()
            if not query.driver or row.driver_id == query.driver
            for delivery in row.deliveries
            if query.admits(delivery, now_ms) and (after is None or delivery_key(delivery) > after)
        )
        return page_of(candidates, delivery_key, query.limit)

    def counts(self) -> dict[str, int]:
        """Return how many drivers stand in each status."""
        counted = dict.fromkeys(STATUSES, 0)
        for row in self.rows.values():
            counted[row.status] += 1
        return counted
