"""Avro codecs for every topic value: single-object encoding and schema evolution, on fastavro alone.

Wire format (Avro spec, "Single object encoding"): ``C3 01``, the 8-byte little-endian CRC-64-AVRO
fingerprint of the writer schema's parsing canonical form, then the schemaless Avro body. A reader
finds the writer schema by fingerprint among the current schema and every ``schemas/history`` version
of the record, and reads into the current schema, so old records stay readable after a change.
"""

from __future__ import annotations

import io
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any, cast

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.schema import fingerprint, to_parsing_canonical_form
from fastavro.utils import generate_many
from fastavro.validation import ValidationError, validate

from base.exceptions import SchemaError

SCHEMA_DIR = Path(__file__).parent
MAGIC = b"\xc3\x01"
HEADER_SIZE = len(MAGIC) + 8

SCHEMA_FILES = {
    "GpsPing": "gps_ping.avsc",
    "CleanPing": "clean_ping.avsc",
    "RejectedPing": "rejected_ping.avsc",
    "DeliveryEvent": "delivery_event.avsc",
    "EtaUpdate": "eta_update.avsc",
    "Alert": "alert.avsc",
    "WhatsAppEvent": "whatsapp_event.avsc",
    "OutboundMessage": "outbound_message.avsc",
    "MessageStatus": "message_status.avsc",
    "ApiAccess": "api_access.avsc",
    "SinkDeadLetter": "sink_dead_letter.avsc",
    "RejectedDeliveryEvent": "rejected_delivery_event.avsc",
    "AlertAction": "alert_action.avsc",
    "Erasure": "erasure.avsc",
    "GuardrailEvent": "guardrail_event.avsc",
}
SCHEMA_NAMES: tuple[str, ...] = tuple(SCHEMA_FILES)

Schema = dict[str, Any]
_PYTHON_TYPES: dict[str, tuple[type, ...]] = {
    "int": (int,),
    "long": (int,),
    "float": (int, float),
    "double": (int, float),
    "boolean": (bool,),
}


def _parse(path: Path) -> Schema:
    return cast(Schema, parse_schema(json.loads(path.read_text(encoding="utf-8"))))


def known_schema(name: str) -> str:
    """Return ``name`` if it is a record type of the project, else raise :class:`SchemaError`."""
    if name not in SCHEMA_FILES:
        raise SchemaError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    return name


@cache
def load_schema(name: str) -> Schema:
    """Return the parsed current schema of record ``name``."""
    return _parse(SCHEMA_DIR / SCHEMA_FILES[known_schema(name)])


@cache
def history(name: str) -> dict[int, Schema]:
    """Return every committed version of record ``name``'s schema, by version number."""
    versions = {}
    for path in (SCHEMA_DIR / "history").glob(f"{known_schema(name)}.v*.avsc"):
        match = re.fullmatch(rf"{name}\.v(\d+)\.avsc", path.name)
        if match:
            versions[int(match.group(1))] = _parse(path)
    return dict(sorted(versions.items()))


def schema_fingerprint(schema: Schema) -> bytes:
    """Return the 8-byte little-endian CRC-64-AVRO fingerprint of ``schema``'s canonical form."""
    # fastavro already gives the little-endian byte order of the spec (and of the Java implementation).
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def _type_name(schema: Any) -> str:
    if isinstance(schema, dict):
        return str(schema.get("symbols") or schema.get("name") or schema.get("type"))
    return str(schema)


class AvroCodec:
    """Encode and decode one record type in Avro single-object encoding."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.schema = load_schema(name)
        self.header = MAGIC + schema_fingerprint(self.schema)
        # The writer coerces plain numeric and boolean fields (1.5 -> 1, "2.5" -> 2.5, "no" -> true):
        # check their Python types ourselves. Union branches are validated by the writer already.
        self._checks = tuple(
            (f["name"], f["type"], _PYTHON_TYPES[f["type"]])
            for f in self.schema["fields"]
            if isinstance(f["type"], str) and f["type"] in _PYTHON_TYPES
        )
        self._defaults = {f["name"]: f["default"] for f in self.schema["fields"] if "default" in f}
        self._writers = {schema_fingerprint(s): s for s in history(name).values()}
        self._writers[self.header[2:]] = self.schema

    def encode(self, record: Mapping[str, Any]) -> bytes:
        """Return ``record`` as bytes; fields with a schema default may be left out."""
        for field, avro_type, types in self._checks:
            value = record.get(field)
            # bool is an int subclass: it fits a boolean field only, and a boolean field takes only bool.
            if value is not None and (
                not isinstance(value, types) or isinstance(value, bool) != (bool in types)
            ):
                raise SchemaError(f"{self.name}.{field} is {value!r:.60}, expected {avro_type}")
        out = io.BytesIO()
        out.write(self.header)
        try:
            schemaless_writer(out, self.schema, record, strict_allow_default=True)
        except Exception as exc:
            raise SchemaError(f"{self.name}: {self._explain(record, exc)}") from exc
        return out.getvalue()

    def _explain(self, record: Mapping[str, Any], exc: Exception) -> str:
        # The writer's message may not name the field, or may dump a whole union: ask the validator.
        try:
            validate({**self._defaults, **record}, self.schema, raise_errors=True)
        except ValidationError as invalid:
            expected: dict[str, list[str]] = {}  # one entry per field, listing every union branch
            for error in invalid.errors:
                datum = "null or missing" if error.datum is None else f"{error.datum!r:.60}"
                expected.setdefault(f"{error.field} is {datum}", []).append(_type_name(error.schema))
            return "; ".join(f"{got}, expected {' or '.join(types)}" for got, types in expected.items())
        except Exception:  # the validator choked too: the writer's message is all there is
            pass
        return f"{type(exc).__name__}: {str(exc)[:300]}"

    def decode(self, data: bytes) -> dict[str, Any]:
        """Return the record in ``data``, read into the current schema whichever version wrote it."""
        if not isinstance(data, bytes | bytearray | memoryview):  # a tombstone's value is None
            raise SchemaError(f"{self.name}: no value ({type(data).__name__}), not Avro")
        if data[:2] != MAGIC or len(data) < HEADER_SIZE:
            raise SchemaError(f"{self.name}: not Avro single-object encoding (starts {bytes(data[:10])!r})")
        writer = self._writers.get(bytes(data[2:HEADER_SIZE]))
        if writer is None:
            raise SchemaError(f"{self.name}: unknown writer schema fingerprint {data[2:HEADER_SIZE].hex()}")
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            # Same object as the reader: fastavro skips schema resolution (the fast, common path).
            reader = None if writer is self.schema else self.schema
            record = cast(dict[str, Any], schemaless_reader(body, writer, reader))
        except Exception as exc:
            raise SchemaError(f"{self.name}: undecodable body ({type(exc).__name__}: {exc})") from exc
        if body.tell() != len(data):
            raise SchemaError(f"{self.name}: {len(data) - body.tell()} trailing bytes after the record")
        return record


@cache
def codec(name: str) -> AvroCodec:
    """Return the shared codec of record ``name``."""
    return AvroCodec(name)


def check_backward_compatible(old: Schema, new: Schema, samples: int = 50) -> None:
    """Raise SchemaError unless records written with ``old`` can be read with ``new``."""
    for sample in generate_many(old, samples):
        out = io.BytesIO()
        schemaless_writer(out, old, sample)
        out.seek(0)
        try:
            schemaless_reader(out, old, new)
        except Exception as exc:
            raise SchemaError(
                f"{new['name']} cannot read {old['name']}: {exc}", reason="incompatible"
            ) from exc
