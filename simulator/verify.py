"""Check a simulated run against its ground truth by reading what the pipeline wrote to Kafka.

A ping may appear twice on an output topic only as an exact replay after a crash (same bytes); the check
counts each distinct record once and reports any conflicting pair, which would be a real defect.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.settings import Settings
from schemas.codecs import codec


@dataclass
class Verdicts:
    """What the pipeline decided, per driver and verdict, with replay bookkeeping."""

    per_driver: dict[str, Counter[str]] = field(default_factory=dict)
    exact_replays: int = 0
    conflicts: list[str] = field(default_factory=list)

    def total(self) -> int:
        return sum(sum(c.values()) for c in self.per_driver.values())

    def overall(self) -> Counter[str]:
        result: Counter[str] = Counter()
        for counts in self.per_driver.values():
            result.update(counts)
        return result


def _identity(topic_kind: str, value: dict[str, Any]) -> tuple[Any, ...]:
    if topic_kind == "clean":
        return ("clean", value["ping_id"])
    # A rejection is one source record: the same ping sent twice is two records with two verdicts.
    return ("rejected", value["source_partition"], value["source_offset"], value["ping_id"])


def collect_verdicts(
    settings: Settings,
    driver_prefix: str,
    expected_total: int,
    timeout_s: float = 120.0,
    settle_s: float = 3.0,
) -> Verdicts:
    """Read the clean and rejected topics to their end once ``expected_total`` distinct verdicts arrived.

    Reaching the expected count is not the end: a verdict the pipeline writes twice may still be on its
    way. The read goes on until every partition has been read up to its high watermark and no watermark
    has moved for ``settle_s`` seconds (or ``timeout_s`` passes), so an extra verdict is seen and counted.
    ``settle_s=0`` stops at the expected count (to watch progress).
    """
    names = {
        topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix): ("clean", codec("CleanPing")),
        topics.qualified(topics.GPS_PINGS_REJECTED, settings.topic_prefix): (
            "rejected",
            codec("RejectedPing"),
        ),
    }
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"verify-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
        }
    )
    assignment = []
    for name in names:
        for partition in consumer.list_topics(name, timeout=10).topics[name].partitions:
            assignment.append(TopicPartition(name, partition, 0))
    consumer.assign(assignment)
    prefix = driver_prefix.encode()
    seen: dict[tuple[Any, ...], bytes] = {}
    verdicts = Verdicts()
    deadline = time.monotonic() + timeout_s
    ends: list[int] = []
    settled_at = 0.0
    try:
        while time.monotonic() < deadline:
            for message in consumer.consume(2000, timeout=0.2):
                key, raw = message.key(), message.value()
                if message.error() or raw is None or key is None or not key.startswith(prefix):
                    continue
                kind, decoder = names[str(message.topic())]
                _record(verdicts, seen, kind, decoder.decode(raw), raw, key.decode())
            if verdicts.total() < expected_total:
                continue
            if settle_s <= 0:
                break
            now_ends = [consumer.get_watermark_offsets(tp, timeout=5, cached=False)[1] for tp in assignment]
            positions = [max(tp.offset, 0) for tp in consumer.position(assignment)]
            if now_ends != ends or any(p < end for p, end in zip(positions, now_ends, strict=True)):
                ends, settled_at = now_ends, time.monotonic()
            elif time.monotonic() - settled_at >= settle_s:
                break
    finally:
        consumer.close()
    return verdicts


def _record(
    verdicts: Verdicts,
    seen: dict[tuple[Any, ...], bytes],
    kind: str,
    value: dict[str, Any],
    raw: bytes,
    driver: str,
) -> None:
    identity = _identity(kind, value)
    if identity in seen:
        if seen[identity] == raw:
            verdicts.exact_replays += 1
        else:
            verdicts.conflicts.append(f"{identity} emitted twice with different content")
        return
    seen[identity] = raw
    verdict = "clean" if kind == "clean" else value["reason"]
    verdicts.per_driver.setdefault(driver, Counter())[verdict] += 1


def compare(expected: dict[str, dict[str, int]], verdicts: Verdicts) -> list[str]:
    """List every driver and verdict whose count differs from the ground truth, plus any conflict."""
    problems = list(verdicts.conflicts)
    for driver in sorted(set(expected) | set(verdicts.per_driver)):
        want, got = Counter(expected.get(driver, {})), verdicts.per_driver.get(driver, Counter())
        for verdict in sorted(set(want) | set(got)):
            if want[verdict] != got[verdict]:
                problems.append(f"{driver} {verdict}: expected {want[verdict]}, got {got[verdict]}")
    return problems
