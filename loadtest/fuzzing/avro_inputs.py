"""Malformed Avro payloads as hypothesis strategies, for a decoder or the agent reading a topic.

``records(schema)`` draws records that fit a schema with extreme values (NaN and infinite doubles, the
ends of int and long, empty and odd strings); ``payloads(name)`` draws the bytes a topic of that record
may carry: such records encoded, by the current writer or an older one, and the same bytes truncated,
bit-flipped, with trailing bytes, under an unknown writer fingerprint, another record type's bytes,
random bytes, or no value at all (a tombstone).
"""

from __future__ import annotations

import io
from functools import cache
from typing import Any

from fastavro import schemaless_writer
from hypothesis import strategies as st

from base.exceptions import SchemaError
from schemas.codecs import MAGIC, SCHEMA_NAMES, codec, history, load_schema, schema_fingerprint

Schema = Any
_LIMITS = {"int": 2**31, "long": 2**63}


def _strings() -> st.SearchStrategy[str]:
    return st.one_of(
        st.text(max_size=20),
        st.sampled_from(["", " ", "\x00", "NaN", "-1", "99999999999999999999", "{", "[]", "null", "ü" * 200]),
    )


def _numbers(kind: str) -> st.SearchStrategy[Any]:
    if kind in _LIMITS:
        top = _LIMITS[kind]
        return st.one_of(st.integers(-top, top - 1), st.sampled_from([-top, top - 1, 0, -1]))
    return st.floats(allow_nan=True, allow_infinity=True, width=32 if kind == "float" else 64)


def _value(schema: Schema, named: dict[str, Schema]) -> st.SearchStrategy[Any]:
    """Return a strategy of values of ``schema`` (a parsed fastavro schema)."""
    if isinstance(schema, list):
        return st.one_of([_value(branch, named) for branch in schema])
    if isinstance(schema, str):
        if schema in named:
            return _value(named[schema], named)
        primitives: dict[str, st.SearchStrategy[Any]] = {
            "null": st.none(),
            "boolean": st.booleans(),
            "string": _strings(),
            "bytes": st.binary(max_size=20),
        }
        return primitives[schema] if schema in primitives else _numbers(schema)
    kind = schema["type"]
    if kind == "record":
        named[schema["name"]] = schema
        fields = {f["name"]: _value(f["type"], named) for f in schema["fields"]}
        return st.fixed_dictionaries(fields)
    if kind == "enum":
        named[schema["name"]] = schema
        return st.sampled_from(schema["symbols"])
    if kind == "array":
        return st.lists(_value(schema["items"], named), max_size=4)
    if kind == "map":
        return st.dictionaries(_strings(), _value(schema["values"], named), max_size=3)
    if kind == "fixed":
        named[schema["name"]] = schema
        return st.binary(min_size=schema["size"], max_size=schema["size"])
    return _value(kind, named)


def records(schema: Schema) -> st.SearchStrategy[dict[str, Any]]:
    """Draw records that fit ``schema``, with extreme values in every field."""
    return _value(schema, {})


def _written(schema: Schema, record: dict[str, Any]) -> bytes:
    """Return ``record`` in single-object encoding by writer ``schema``, or b"" if it does not fit."""
    out = io.BytesIO()
    out.write(MAGIC + schema_fingerprint(schema))
    try:
        schemaless_writer(out, schema, record)
    except Exception:  # a drawn value the writer refuses (a float out of float32 range ...)
        return b""
    return out.getvalue()


@cache
def encoded(name: str) -> st.SearchStrategy[bytes]:
    """Draw well-formed payloads of record ``name``: by its current writer, or by any older one."""

    def by(writer: Schema) -> st.SearchStrategy[bytes]:
        return records(writer).map(lambda record: _written(writer, record)).filter(bool)

    return st.one_of([by(writer) for writer in (load_schema(name), *history(name).values())])


@st.composite
def damaged(draw: st.DrawFn, name: str) -> bytes:
    """Return a well-formed payload of ``name`` damaged: truncated, flipped, extended, re-headed."""
    data = draw(encoded(name))
    action = draw(st.sampled_from(["truncate", "flip", "flip", "trailing", "fingerprint", "body"]))
    if action == "truncate":
        return data[: draw(st.integers(0, len(data) - 1))]
    if action == "flip":
        out = bytearray(data)
        for _ in range(draw(st.integers(1, 6))):
            out[draw(st.integers(0, len(out) - 1))] ^= 1 << draw(st.integers(0, 7))
        return bytes(out)
    if action == "trailing":
        return data + draw(st.binary(min_size=1, max_size=16))
    if action == "fingerprint":  # a writer schema nobody registered: a future version, another project
        return MAGIC + draw(st.binary(min_size=8, max_size=8)) + data[10:]
    return data[:10] + draw(st.binary(max_size=64))  # a known writer, a body of noise


@cache
def payloads(name: str) -> st.SearchStrategy[bytes | None]:
    """Draw the values a topic of record ``name`` may carry, well-formed or not."""
    others = [other for other in SCHEMA_NAMES if other != name]
    return st.one_of(
        encoded(name),
        damaged(name),
        damaged(name),
        damaged(name),
        st.sampled_from(others).flatmap(encoded),  # another record type's bytes on this topic
        st.binary(max_size=128),
        st.binary(max_size=64).map(lambda body: MAGIC + body),
        st.sampled_from([None, b"", MAGIC, MAGIC + b"\x00" * 8, b"\x00", b"{}", b'{"ping_id": "x"}']),
    )


def decoded(name: str, value: bytes | None) -> dict[str, Any] | None:
    """Return ``value`` decoded as record ``name``, or None where an agent must refuse it."""
    if value is None:
        return None
    try:
        return codec(name).decode(value)
    except SchemaError:
        return None
