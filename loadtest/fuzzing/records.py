"""Bad records onto a topic an agent decodes, and the agent's counters read back from the worker's /metrics.

An agent keeps up when it goes on processing: every undecodable record is dead-lettered or counted as
skipped with its reason, and a valid record sent after them is processed. ``produce_drawn`` produces N
drawn payloads and says how many of them do not decode (what the agent must account for);
``metric_sum`` reads a counter family from the worker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from base.kafka import make_producer
from base.settings import Settings
from loadtest.fuzzing.avro_inputs import decoded, payloads
from loadtest.fuzzing.drive import run_examples

FROM_RECORD = b"\x00from-record"  # a drawn key meaning: the record's own key field, when it decodes


@dataclass
class Produced:
    """What was produced onto a topic: how many records, how many of them do not decode."""

    topic: str
    sent: int = 0
    undecodable: int = 0


def produce(settings: Settings, topic: str, records: list[tuple[bytes | None, bytes | None]]) -> None:
    """Produce (key, value) records and wait for the broker's acknowledgements."""
    producer = make_producer(settings, **{"linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError(f"records not acknowledged by the broker on {topic}")


def produce_drawn(
    settings: Settings,
    topic: str,
    schema: str,
    count: int,
    keys: st.SearchStrategy[bytes | None],
    key_field: str,
) -> Produced:
    """Produce ``count`` payloads of record ``schema`` drawn malformed (see avro_inputs.payloads), keyed
    as drawn from ``keys`` (``FROM_RECORD``: by the record's ``key_field``, as a producer would)."""
    produced = Produced(topic)
    batch: list[tuple[bytes | None, bytes | None]] = []

    def act(drawn: tuple[bytes | None, bytes | None]) -> None:
        key, value = drawn
        record = decoded(schema, value)
        produced.sent += 1
        produced.undecodable += record is None
        if key == FROM_RECORD:
            key = str(record.get(key_field) or "").encode() if record is not None else b"fuzz"
        batch.append((key, value))

    run_examples(st.tuples(keys, payloads(schema)), count, act)
    produce(settings, topic, batch)
    return produced


def metric_sum(url: str, family: str, match: Callable[[dict[str, str]], bool] = lambda labels: True) -> float:
    """Return the sum of the samples of counter ``family`` (without ``_total``) whose labels ``match``."""
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    total = 0.0
    for metrics in text_string_to_metric_families(text):
        if metrics.name != family:
            continue
        for sample in metrics.samples:
            if sample.name.endswith(("_total", "_count")) and match(sample.labels):
                total += sample.value
    return total
