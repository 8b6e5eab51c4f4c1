"""Every Avro decoder on malformed payloads (loadtest/fuzzing): a record or a SchemaError, nothing else.

The CI-sized run of the decoder part of the ``fuzz`` benchmark suite: truncated and bit-flipped records,
unknown writer fingerprints, older writers, other record types, random bytes, tombstones (no value), and
well-formed records of extreme values, 300 per record type.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from base.exceptions import SchemaError
from loadtest.fuzzing.avro_inputs import encoded, payloads
from schemas.codecs import SCHEMA_NAMES, codec

fuzzed = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_a_decoder_returns_a_record_or_raises_schema_error(name: str) -> None:
    decode = codec(name).decode

    @fuzzed
    @given(payloads(name))
    def decodes_or_refuses(value: bytes | None) -> None:
        started = time.thread_time()
        try:
            record: Any = decode(value)  # type: ignore[arg-type]  # a tombstone's value is None
        except SchemaError as exc:
            assert exc.reason == "malformed"
        else:
            assert isinstance(record, dict)
        assert time.thread_time() - started < 1.0, "a decode this slow stalls an agent at fleet rates"

    decodes_or_refuses()


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_every_writer_version_of_a_record_is_read_into_the_current_schema(name: str) -> None:
    fields = {f["name"] for f in codec(name).schema["fields"]}

    @settings(fuzzed, max_examples=100)
    @given(encoded(name))
    def reads(value: bytes) -> None:
        assert set(codec(name).decode(value)) == fields

    reads()


def test_the_payloads_cover_every_kind_of_damage() -> None:
    # The strategy must keep drawing what found bugs: tombstones, foreign fingerprints, short bodies.
    seen: set[str] = set()

    # 1,000 draws: a null value is one branch in 64, too rare for 300 to show it every time.
    @settings(fuzzed, max_examples=1000)
    @given(st.data())
    def kinds(data: st.DataObject) -> None:
        value = data.draw(payloads("GpsPing"))
        try:
            codec("GpsPing").decode(value)  # type: ignore[arg-type]
            seen.add("decoded")
        except SchemaError as exc:
            seen.add(str(exc).split(": ", 1)[1].split(" ")[0])

    kinds()
    assert {"decoded", "no", "unknown", "not", "undecodable"} <= seen, seen
