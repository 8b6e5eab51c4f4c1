"""Parse a phone's ``POST /v1/pings`` body into GpsPing records. Pure: no I/O.

A body that is not what the contract says (bad JSON, a wrong-typed or unknown field, a ``driver_id``) is
refused whole with ``BadRequest`` naming the field, so nothing of it reaches Kafka. A well-formed ping whose
values fail a stateless rule is reported in ``rejected`` with its reason code.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from base.exceptions import WhatsUpError
from streams.pings.rules import Rejection, RuleConfig, check_stateless

PING_FIELDS = {"ping_id", "ts", "lat", "lon", "accuracy_m", "speed_mps", "heading", "battery", "seq"}
OPTIONAL_NUMBERS = ("accuracy_m", "speed_mps", "heading", "battery")
MAX_PING_ID_LEN = 128


class BadRequest(WhatsUpError):
    """The request body breaks the contract; ``field`` names where, for the 400 answer."""

    def __init__(self, field: str, message: str, status: int = 400) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.status = status


@dataclass
class Intake:
    """A parsed batch: every ping as a GpsPing record, and which of them fail the stateless rules."""

    pings: list[dict[str, Any]] = field(default_factory=list)
    rejected: list[tuple[int, Rejection]] = field(default_factory=list)


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadRequest(where, f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise BadRequest(where, "expected a finite number")
    return number


def _timestamp_ms(value: Any, where: str) -> int:
    if isinstance(value, bool):
        raise BadRequest(where, "expected epoch milliseconds or an ISO-8601 string, got bool")
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise BadRequest(where, "expected a finite epoch milliseconds value")
        return int(value)
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise BadRequest(where, f"{value!r} is not an ISO-8601 timestamp") from None
        if parsed.tzinfo is None:
            raise BadRequest(where, "an ISO-8601 timestamp needs a UTC offset (e.g. Z)")
        return int(parsed.timestamp() * 1000)
    raise BadRequest(where, f"expected epoch milliseconds or an ISO-8601 string, got {type(value).__name__}")


def parse_ping(raw: Any, index: int, driver_id: str, received_ts: int) -> dict[str, Any]:
    """Turn one JSON ping into a GpsPing record, or raise BadRequest naming the field."""
    where = f"pings[{index}]"
    if not isinstance(raw, dict):
        raise BadRequest(where, "expected an object")
    if "driver_id" in raw:
        raise BadRequest(f"{where}.driver_id", "not allowed: the driver comes from the token")
    unknown = sorted(set(raw) - PING_FIELDS)
    if unknown:
        raise BadRequest(f"{where}.{unknown[0]}", "unknown field")
    for name in ("ping_id", "ts", "lat", "lon"):
        if raw.get(name) is None:
            raise BadRequest(f"{where}.{name}", "required")
    ping_id = raw["ping_id"]
    if not isinstance(ping_id, str) or not 0 < len(ping_id) <= MAX_PING_ID_LEN:
        raise BadRequest(f"{where}.ping_id", f"expected a string of 1 to {MAX_PING_ID_LEN} characters")
    try:
        ping_id.encode()
    except UnicodeEncodeError:
        raise BadRequest(f"{where}.ping_id", "not valid Unicode text") from None
    seq = raw.get("seq")
    if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int) or not 0 <= seq < 2**63):
        raise BadRequest(f"{where}.seq", "expected a non-negative integer")
    optional = {
        name: None if raw.get(name) is None else _number(raw[name], f"{where}.{name}")
        for name in OPTIONAL_NUMBERS
    }
    device_ts = _timestamp_ms(raw["ts"], f"{where}.ts")
    if not -(2**62) < device_ts < 2**62:
        raise BadRequest(f"{where}.ts", "out of range")
    return {
        "ping_id": ping_id,
        "driver_id": driver_id,
        "device_ts": device_ts,
        "lat": _number(raw["lat"], f"{where}.lat"),
        "lon": _number(raw["lon"], f"{where}.lon"),
        **optional,
        "seq": seq,
        "source": "app",
        "received_ts": received_ts,
    }


def parse_batch(body: bytes, driver_id: str, received_ts: int, config: RuleConfig, max_pings: int) -> Intake:
    """Parse and edge-check a whole request body; raise BadRequest if any of it breaks the contract."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("body", f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if not isinstance(document, dict):
        raise BadRequest("body", "expected a JSON object with a pings list")
    if "driver_id" in document:
        raise BadRequest("driver_id", "not allowed: the driver comes from the token")
    unknown = sorted(set(document) - {"pings"})
    if unknown:
        raise BadRequest(unknown[0], "unknown field")
    pings = document.get("pings")
    if not isinstance(pings, list):
        raise BadRequest("pings", "required, a list of pings")
    if len(pings) > max_pings:
        raise BadRequest("pings", f"{len(pings)} pings, at most {max_pings} per request", status=413)
    intake = Intake()
    for index, raw in enumerate(pings):
        ping = parse_ping(raw, index, driver_id, received_ts)
        intake.pings.append(ping)
        rejection = check_stateless(ping, config)
        if rejection is not None:
            intake.rejected.append((index, rejection))
    return intake
