"""Parse a ``POST /v1/deliveries/events`` body into DeliveryEvent records. Pure: no I/O.

A body is one event object or ``{"events": [...]}``. Anything that breaks the contract (bad JSON, a missing,
unknown or wrong-typed field, coordinates off the globe) refuses the whole request with ``BadRequest``
naming the field, so nothing of it reaches Kafka. Whether an event fits the delivery's state is decided
later by the state machine, which dead-letters it with a reason code.
"""

from __future__ import annotations

import json
from typing import Any

from streams.deliveries.state import FailureReason, Status
from streams.pings.intake import BadRequest, _number, _reject_constant, _timestamp_ms

MAX_ID_LEN = 128
MAX_TEXT_LEN = 500
MAX_ADDRESS_LEN = 200
TEXT_FIELDS = {"pickup_address": MAX_ADDRESS_LEN, "dropoff_address": MAX_ADDRESS_LEN, "customer_name": 100,
               "proof_ref": 300, "note": MAX_TEXT_LEN}  # fmt: skip
ID_FIELDS = ("event_id", "delivery_id", "driver_id")
POINT_FIELDS = ("pickup_lat", "pickup_lon", "dropoff_lat", "dropoff_lon")
EVENT_FIELDS = {*ID_FIELDS, "type", "ts", *POINT_FIELDS, "promised_at", "customer_ref", "failure_reason",
                *TEXT_FIELDS}  # fmt: skip
TYPES = frozenset(s.value for s in Status)
FAILURE_REASONS = frozenset(r.value for r in FailureReason)


def _text(raw: dict[str, Any], name: str, where: str, limit: int, required: bool) -> str | None:
    value = raw.get(name)
    if value is None:
        if required:
            raise BadRequest(f"{where}.{name}", "required")
        return None
    if not isinstance(value, str) or not 0 < len(value) <= limit or not value.isprintable():
        raise BadRequest(f"{where}.{name}", f"expected printable text of 1 to {limit} characters")
    return value


def parse_event(raw: Any, where: str, principal: str) -> dict[str, Any]:
    """Turn one JSON delivery event into a DeliveryEvent record, or raise BadRequest naming the field."""
    if not isinstance(raw, dict):
        raise BadRequest(where, "expected an object")
    unknown = sorted(set(raw) - EVENT_FIELDS)
    if unknown:
        raise BadRequest(f"{where}.{unknown[0]}", "unknown field")
    record: dict[str, Any] = {name: _text(raw, name, where, MAX_ID_LEN, True) for name in ID_FIELDS}
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in TYPES:  # a list or an object is unhashable, not just wrong
        raise BadRequest(f"{where}.type", f"expected one of {', '.join(sorted(TYPES))}")
    if raw.get("ts") is None:
        raise BadRequest(f"{where}.ts", "required")
    record["type"] = raw["type"]
    record["ts"] = _timestamp_ms(raw["ts"], f"{where}.ts")
    for name in POINT_FIELDS:
        value = None if raw.get(name) is None else _number(raw[name], f"{where}.{name}")
        limit = 90.0 if name.endswith("lat") else 180.0
        if value is not None and not -limit <= value <= limit:
            raise BadRequest(f"{where}.{name}", f"expected -{limit:g}..{limit:g} degrees")
        record[name] = value
    promised = raw.get("promised_at")
    record["promised_at"] = None if promised is None else _timestamp_ms(promised, f"{where}.promised_at")
    for name in ("ts", "promised_at"):
        if record[name] is not None and not 0 < record[name] < 2**62:
            raise BadRequest(f"{where}.{name}", "out of range")
    record["customer_ref"] = _text(raw, "customer_ref", where, MAX_ID_LEN, False)
    for name, limit in TEXT_FIELDS.items():
        record[name] = _text(raw, name, where, limit, False)
    reason = raw.get("failure_reason")
    if reason is not None and (
        not isinstance(reason, str) or reason not in FAILURE_REASONS or kind != "failed"
    ):
        expected = ", ".join(sorted(FAILURE_REASONS))
        raise BadRequest(f"{where}.failure_reason", f"only on a failed event, one of {expected}")
    record["failure_reason"] = reason
    record["source"] = "api"
    record["principal"] = principal
    return record


def parse_events(body: bytes, principal: str, max_events: int) -> list[dict[str, Any]]:
    """Parse a whole request body; raise BadRequest if any of it breaks the contract."""
    try:
        document = json.loads(body, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BadRequest("body", f"malformed JSON: {type(exc).__name__}: {str(exc)[:200]}") from None
    if isinstance(document, dict) and "events" in document:
        unknown = sorted(set(document) - {"events"})
        if unknown:
            raise BadRequest(unknown[0], "unknown field")
        events = document["events"]
        if not isinstance(events, list) or not events:
            raise BadRequest("events", "expected a non-empty list of events")
        if len(events) > max_events:
            raise BadRequest("events", f"{len(events)} events, at most {max_events} per request", status=413)
        return [parse_event(raw, f"events[{i}]", principal) for i, raw in enumerate(events)]
    if not isinstance(document, dict):
        raise BadRequest("body", 'expected a delivery event object or {"events": [...]}')
    return [parse_event(document, "event", principal)]
