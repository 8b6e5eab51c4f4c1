"""Turn Kafka values into Avro rows for the staging tables, without decoding them in Python.

A value on the wire is Avro single-object encoding: a 10-byte header naming the writer schema, then the
record's body. A body written with the current schema is already valid Avro for the staging table: the sink
appends the Kafka partition and offset (two more Avro fields) and hands ClickHouse one Object Container File
per batch, which the engine decodes in C++. Only records from an older schema version are decoded and
re-encoded here, and RejectedPing, whose nested ping is flattened first. Pure functions, no I/O.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from fastavro import parse_schema, schemaless_writer, writer

from base import topics
from base.exceptions import SchemaError
from schemas.codecs import HEADER_SIZE, MAGIC, codec, load_schema

SYNC_MARKER = b"whatsup-sink-ocf"  # any 16 bytes; fixed so a batch's file is the same bytes on replay
# Partition (2 bytes) and offset (8 bytes), little-endian: an Avro fixed is one C call to append, where
# two varints cost more than the rest of staging a record.
_KAFKA_FIELDS = [{"name": "_kafka", "type": {"type": "fixed", "name": "KafkaPosition", "size": 10}}]


def zigzag(value: int) -> bytes:
    """Return ``value`` as an Avro long: zig-zag, then base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Read an Avro int/long at ``pos``; return it and the position after it."""
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def leading_string(body: bytes, skip_ints: int) -> bytes:
    """Return the UTF-8 bytes of the string field after ``skip_ints`` int/long fields of an Avro body."""
    if skip_ints == 1 and body[0] < 0x80 and body[1] < 0x80:  # small version and short id: most records
        return body[2 : 2 + (body[1] >> 1)]
    pos = 0
    for _ in range(skip_ints):
        _, pos = read_long(body, pos)
    length, pos = read_long(body, pos)
    return body[pos : pos + length]


# Packs the ``_kafka`` field in one C call (two int.to_bytes and a concatenation cost twice as much).
kafka_position: Callable[[int, int], bytes] = struct.Struct("<HQ").pack
"""Return the ``_kafka`` field of a staged row: partition and offset."""


def container_file(schema: dict[str, Any], bodies: list[bytes]) -> bytes:
    """Return an Avro Object Container File holding ``bodies`` (records already encoded with ``schema``)."""
    return _header(json.dumps(schema)) + _block(bodies)


@cache
def _header(schema_json: str) -> bytes:
    out = io.BytesIO()
    writer(out, parse_schema(json.loads(schema_json)), [], codec="null", sync_marker=SYNC_MARKER)
    return out.getvalue()


def _block(bodies: list[bytes]) -> bytes:
    data = b"".join(bodies)
    return zigzag(len(bodies)) + zigzag(len(data)) + data + SYNC_MARKER


def _flatten_rejected(record: dict[str, Any]) -> dict[str, Any]:
    ping = record.get("ping") or {}
    return {
        **{k: record.get(k) for k in ("reason", "detail", "driver_id", "ping_id", "raw_payload")},
        **{k: ping.get(k) for k in ("device_ts", "lat", "lon", "accuracy_m", "source", "received_ts")},
        **{k: record.get(k) for k in ("source_topic", "source_partition", "source_offset", "rejected_ts")},
    }


_FLAT_REJECTED = {
    "type": "record",
    "name": "FlatRejectedPing",
    "namespace": "whatsup.sink",
    "fields": [
        {"name": "reason", "type": "string"},
        {"name": "detail", "type": "string"},
        *(
            {"name": name, "type": ["null", kind]}
            for name, kind in (
                ("driver_id", "string"),
                ("ping_id", "string"),
                ("raw_payload", "bytes"),
                ("device_ts", "long"),
                ("lat", "double"),
                ("lon", "double"),
                ("accuracy_m", "double"),
                ("source", "string"),
                ("received_ts", "long"),
                ("source_topic", "string"),
                ("source_partition", "int"),
                ("source_offset", "long"),
            )
        ),
        {"name": "rejected_ts", "type": "long"},
    ],
}


@dataclass(frozen=True)
class Route:
    """Where a topic's records go: the staging table, the event table, and how a value becomes a row."""

    topic: str
    staging: str
    table: str
    schema: str
    reshape: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    flat_schema: dict[str, Any] | None = None
    # Leading int fields before the id string, for topics whose replays the sink drops by id.
    id_after_ints: int | None = None

    @property
    def file_schema(self) -> dict[str, Any]:
        """Return the Avro schema of the staged rows: the record's fields, then partition and offset."""
        base = self.flat_schema or load_schema(self.schema)
        return {**_strip(base), "fields": [*_strip(base)["fields"], *_KAFKA_FIELDS]}

    @property
    def fast_header(self) -> bytes | None:
        """Return the header of values whose body is staged as it is (current schema, no reshaping)."""
        return None if self.reshape is not None else codec(self.schema).header

    def stage(self, value: bytes, partition: int, offset: int) -> bytes:
        """Return the staged Avro body of one Kafka value; raise SchemaError if it cannot be read."""
        avro = codec(self.schema)
        if value[:2] != MAGIC or len(value) < HEADER_SIZE:
            raise SchemaError(f"{self.schema}: not Avro single-object encoding", reason="undecodable")
        if self.reshape is None and value[2:HEADER_SIZE] == avro.header[2:]:
            body = value[HEADER_SIZE:]  # the fast path: the current schema, passed through untouched
        else:
            record = avro.decode(value)  # an older writer schema, or a record to flatten
            if self.reshape is not None and self.flat_schema is not None:
                out = io.BytesIO()
                schemaless_writer(out, _parsed(self.flat_schema["name"]), self.reshape(record))
                body = out.getvalue()
            else:
                body = avro.encode(record)[HEADER_SIZE:]
        return body + kafka_position(partition, offset)

    def record_id(self, staged: bytes) -> bytes | None:
        """Return the id the sink drops replays by, read from a staged body, or None."""
        return None if self.id_after_ints is None else leading_string(staged, self.id_after_ints)


def _strip(schema: dict[str, Any]) -> dict[str, Any]:
    # fastavro's parsed schemas carry private keys (__fastavro_parsed ...); the file header wants plain JSON.
    if isinstance(schema, dict):
        return {k: _strip(v) for k, v in schema.items() if not k.startswith("__")}
    if isinstance(schema, list):
        return [_strip(v) for v in schema]
    return schema


@cache
def _parsed(name: str) -> Any:
    return parse_schema(_FLAT_REJECTED) if name == _FLAT_REJECTED["name"] else None


ROUTES: tuple[Route, ...] = (
    Route(topics.GPS_PINGS_CLEAN, "in_gps_pings_clean", "gps_pings", "CleanPing", id_after_ints=1),
    Route(
        topics.GPS_PINGS_REJECTED,
        "in_gps_pings_rejected",
        "gps_pings_rejected",
        "RejectedPing",
        reshape=_flatten_rejected,
        flat_schema=_FLAT_REJECTED,
    ),
    Route(topics.DELIVERIES_EVENTS, "in_delivery_events", "delivery_events", "DeliveryEvent"),
    Route(topics.DELIVERIES_ETA, "in_eta_updates", "eta_updates", "EtaUpdate"),
    Route(topics.ALERTS, "in_alerts", "alerts", "Alert"),
    Route(topics.WHATSAPP_OUTBOUND, "in_whatsapp_outbound", "whatsapp_messages", "OutboundMessage"),
    Route(topics.WHATSAPP_STATUS, "in_whatsapp_status", "whatsapp_messages", "MessageStatus"),
    Route(topics.WHATSAPP_EVENTS_RAW, "in_whatsapp_inbound", "whatsapp_inbound", "WhatsAppEvent"),
    Route(topics.API_ACCESS, "in_api_access", "api_access_log", "ApiAccess"),
    Route(topics.ALERT_ACTIONS, "in_alert_actions", "alert_actions", "AlertAction"),
    Route(topics.CONVERSATIONS_GUARDRAILS, "in_guardrail_events", "guardrail_events", "GuardrailEvent"),
)
ROUTES_BY_TOPIC = {route.topic: route for route in ROUTES}
