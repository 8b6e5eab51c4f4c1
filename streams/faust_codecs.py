"""Faust serializers for the Avro records: ``value_serializer=faust_codec_name("GpsPing")``.

The codecs themselves live in :mod:`schemas.codecs`, which knows nothing of Faust; this module only
registers one Faust codec per record type, so an agent's channel decodes and encodes Avro values.
"""

from __future__ import annotations

from typing import Any

from faust.serializers import codecs as faust_codecs

from schemas.codecs import SCHEMA_NAMES, codec, known_schema


class FaustAvroCodec(faust_codecs.Codec):
    """Faust codec for one record type: ``value_serializer=faust_codec_name("GpsPing")``."""

    def __init__(self, name: str, children: tuple[Any, ...] | None = None, **kwargs: Any) -> None:
        super().__init__(children=children, name=name, **kwargs)
        self.avro = codec(name)

    def _dumps(self, obj: Any) -> bytes:
        return self.avro.encode(obj)

    def _loads(self, s: bytes) -> Any:
        return self.avro.decode(s)


def faust_codec_name(name: str) -> str:
    """Return the Faust serializer name of record ``name``, e.g. ``avro.GpsPing``."""
    return f"avro.{known_schema(name)}"


def register_faust_codecs() -> None:
    """Register a Faust codec for every record type (idempotent)."""
    for name in SCHEMA_NAMES:
        faust_codecs.register(faust_codec_name(name), FaustAvroCodec(name))
