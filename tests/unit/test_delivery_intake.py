"""POST /v1/deliveries/events bodies and API keys with roles: what is accepted, what is refused and why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from base.apikeys import POST_EVENTS, READ_DRIVERS, ApiKeyError, authenticate, fingerprint
from schemas.codecs import codec
from streams.deliveries.intake import parse_events
from streams.pings.intake import BadRequest

EVENT = {
    "event_id": "e1",
    "delivery_id": "d1",
    "driver_id": "drv-1",
    "type": "assigned",
    "ts": "2026-11-23T04:00:00Z",
    "pickup_lat": -23.5,
    "pickup_lon": -46.6,
    "dropoff_lat": -23.6,
    "dropoff_lon": -46.7,
    "promised_at": 1_790_000_000_000,
    "customer_ref": "cust-1",
}


def body(value: Any) -> bytes:
    return json.dumps(value).encode()


def test_one_event_and_a_list_parse_into_avro_ready_records() -> None:
    [one] = parse_events(body(EVENT), "key:abc", 10)
    assert one["ts"] == 1_795_406_400_000 and one["principal"] == "key:abc" and one["source"] == "api"
    assert codec("DeliveryEvent").decode(codec("DeliveryEvent").encode(one))["type"] == "assigned"
    many = parse_events(body({"events": [EVENT, {**EVENT, "event_id": "e2", "type": "picked_up"}]}), "k", 10)
    assert [e["event_id"] for e in many] == ["e1", "e2"]


def test_addresses_names_and_a_failure_reason_parse() -> None:
    assigned = {
        **EVENT,
        "pickup_address": "Rua A, 10",
        "dropoff_address": "Av. B, 200",
        "customer_name": "Ana",
    }
    failed = {**EVENT, "event_id": "e2", "type": "failed", "failure_reason": "wrong_address",
              "proof_ref": "location:-23.6,-46.7"}  # fmt: skip
    one, two = parse_events(body({"events": [assigned, failed]}), "k", 10)
    assert (one["dropoff_address"], one["customer_name"], one["failure_reason"]) == (
        "Av. B, 200",
        "Ana",
        None,
    )
    decoded = codec("DeliveryEvent").decode(codec("DeliveryEvent").encode(two))
    assert (decoded["failure_reason"], decoded["proof_ref"]) == ("wrong_address", "location:-23.6,-46.7")


@pytest.mark.parametrize(
    ("payload", "field", "status"),
    [
        (b"{", "body", 400),
        (body([EVENT]), "body", 400),
        (body({"events": []}), "events", 400),
        (body({"events": [EVENT] * 11}), "events", 413),
        (body({"events": [EVENT], "extra": 1}), "extra", 400),
        (body({**EVENT, "colour": "red"}), "event.colour", 400),
        (body({**EVENT, "event_id": ""}), "event.event_id", 400),
        (body({**EVENT, "driver_id": None}), "event.driver_id", 400),
        (body({**EVENT, "type": "teleported"}), "event.type", 400),
        (body({**EVENT, "ts": None}), "event.ts", 400),
        (body({**EVENT, "ts": "yesterday"}), "event.ts", 400),
        (body({**EVENT, "pickup_lat": 91}), "event.pickup_lat", 400),
        (body({**EVENT, "dropoff_lon": "x"}), "event.dropoff_lon", 400),
        (body({**EVENT, "promised_at": -5}), "event.promised_at", 400),
        (body({"events": [EVENT, {**EVENT, "customer_ref": 7}]}), "events[1].customer_ref", 400),
        (b'{"events": [{"ts": NaN}]}', "body", 400),
        (body({**EVENT, "type": "failed", "failure_reason": "asleep"}), "event.failure_reason", 400),
        (body({**EVENT, "failure_reason": "not_home"}), "event.failure_reason", 400),
        (body({**EVENT, "pickup_address": "x" * 201}), "event.pickup_address", 400),
        (body({**EVENT, "customer_name": "Ana\nSouza"}), "event.customer_name", 400),
    ],
)
def test_bad_bodies_are_refused_naming_the_field(payload: bytes, field: str, status: int) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_events(payload, "k", 10)
    assert (refused.value.field, refused.value.status) == (field, status)


KEYS = {"i" * 16: frozenset({"ingest"}), "d" * 16: frozenset({"dispatcher", "partner"})}


def test_keys_with_the_role_pass_and_are_known_by_their_fingerprint() -> None:
    who = authenticate(KEYS, "d" * 16, READ_DRIVERS)
    assert who.fingerprint == fingerprint("d" * 16) != "d" * 16
    assert who.role(READ_DRIVERS) == "dispatcher"
    assert authenticate(KEYS, "i" * 16, POST_EVENTS).roles == {"ingest"}


@pytest.mark.parametrize(
    ("keys", "presented", "status", "reason"),
    [
        (KEYS, None, 401, "missing_api_key"),
        (KEYS, "", 401, "missing_api_key"),
        (KEYS, "x" * 16, 401, "bad_api_key"),
        (KEYS, "i" * 16, 403, "forbidden_role"),
        ({}, "i" * 16, 503, "api_keys_disabled"),
    ],
)
def test_refusals_say_why(keys: Any, presented: str | None, status: int, reason: str) -> None:
    with pytest.raises(ApiKeyError) as refused:
        authenticate(keys, presented, READ_DRIVERS)
    assert (refused.value.status, refused.value.reason) == (status, reason)
