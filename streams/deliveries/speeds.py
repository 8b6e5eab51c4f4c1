"""Learn the riding speed per (res-7 cell, hour of week) from the clean pings, readable on every worker.

Two steps, because cells are not co-partitioned with drivers:
1. The tracking agent (``track_drivers`` in streams/deliveries/agents.py), which decodes every clean ping
   anyway, keeps the samples that say something about traffic (``speed_records``), sums them per cell key
   over its batch, and sends one record per key to the internal topic ``cell-speed-samples``, keyed by cell
   (a repartition). It sends the fleet-wide dwell and ride samples (``dwell:<threshold>``, ``ride:ratio``)
   to the same topic.
2. ``fold_cell_speeds`` reads that topic; each cell key has exactly one writer (the owner of its partition),
   which folds the sums into ``cell_speeds``, a table of decayed means persisted through its changelog.

Reading: every worker keeps a replica of all cells (``CellSpeedReplica``), fed by tailing the table's
compacted changelog on every partition, with no consumer group. It plays the part of a GlobalTable, which
faust-streaming does not keep up to date across workers at runtime (faust-streaming issue 283). The
replica holds 24 bytes of value per key; São Paulo's ~1,500 res-7 cells times 168 hours bound it at about
250,000 keys (tens of MB at most; docs/BENCHMARKS.md has the measured figure).
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from base.settings import Settings
from base.tls import aiokafka_config
from streams.app import app, settings
from streams.deliveries.cell_speeds import (
    CellSpeed,
    SpeedConfig,
    dwell_key,
    fold,
    lookup,
    lookup_fleet,
    ride_key,
    sample_of,
    summarize,
)
from streams.outputs import RecordSender

log = logging.getLogger(__name__)

SPEEDS = SpeedConfig()
BATCH_SIZE = 5_000
BATCH_WITHIN_S = 1.0


def samples_topic_name(config: Settings) -> str:
    """Return the name of the topic the learned speeds and dwell are taught through, for a deployment."""
    return f"{config.topic_prefix}{config.app_id}-cell-speed-samples"


cell_speed_samples_topic = app.topic(
    samples_topic_name(settings),
    key_type=str,
    value_type=bytes,
    key_serializer="raw",
    value_serializer="raw",
    partitions=settings.partitions,
    internal=True,
)

# Records sent and waited for (its own producer: see streams/outputs.py).
deliver_records = RecordSender(settings).deliver

cell_speeds = app.Table(
    "cell_speeds",
    key_type=bytes,
    value_type=bytes,
    partitions=settings.partitions,
    default=None,
    use_partitioner=True,
)


def encode_sum(speed_sum: float, count: int, newest_ts: int) -> bytes:
    """Pack a batch's sum for one cell key."""
    return CellSpeed(speed_sum, float(count), newest_ts).pack()


def fold_batch(events: Sequence[Any], load: Any) -> dict[bytes, CellSpeed]:
    """Fold a batch of per-cell sums into the stored speeds; return the new value of each touched key."""
    updated: dict[bytes, CellSpeed] = {}
    for event in events:
        key = event.key.encode() if isinstance(event.key, str) else event.key
        try:
            part = CellSpeed.unpack(event.value)
        except (struct.error, TypeError):  # a record we did not write: skip it, never die on it
            log.warning("skipping a malformed cell-speed sample on key %r", key)
            continue
        prev = updated.get(key)
        if prev is None:
            stored = load(key)
            prev = CellSpeed.unpack(stored) if stored is not None else None
        updated[key] = fold(prev, part.speed_mps, int(part.weight), part.last_ts, SPEEDS)
    return updated


@app.agent(cell_speed_samples_topic, concurrency=1)
async def fold_cell_speeds(stream: faust.StreamT[Any]) -> None:
    """Fold per-cell sums into the decayed means, changelog first, as the clean stage persists its state."""
    changelog = cell_speeds.changelog_topic.get_topic_name()
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
        updated = fold_batch(events, cell_speeds.data.get)
        await deliver_records([(changelog, k, v.pack()) for k, v in updated.items()])
        for key, value in updated.items():
            cell_speeds.data[key] = value.pack()
            replica.put(key, value)


class CellSpeedReplica:
    """Every cell's learned speed in this process, fed by the changelog of ``cell_speeds``."""

    def __init__(self) -> None:
        self.speeds: dict[str, CellSpeed] = {}

    def put(self, key: bytes, value: CellSpeed) -> None:
        """Record a key's newest value."""
        self.speeds[key.decode()] = value

    def apply(self, key: bytes | None, raw: bytes | None) -> None:
        """Apply one changelog record, ignoring what cannot be read."""
        if key is None or raw is None:
            return
        try:
            self.put(key, CellSpeed.unpack(raw))
        except (struct.error, TypeError, UnicodeDecodeError):  # skip it, never die on one record
            log.warning("skipping a malformed cell-speeds changelog record")

    def lookup(self, h3_r7: int, ts_ms: int) -> float | None:
        """Return the cell's learned speed at the instant's hour of week, if enough samples back it."""
        return lookup(self.speeds, h3_r7, ts_ms, SPEEDS)


replica = CellSpeedReplica()


def lookup_cell_speed(h3_r7: int, ts_ms: int) -> float | None:
    """Return the learned speed of a res-7 cell at the hour of week of ``ts_ms``, or None if unknown."""
    return replica.lookup(h3_r7, ts_ms)


def lookup_dwell(threshold_s: int) -> float | None:
    """Return how long the fleet's stops in transit went on beyond ``threshold_s``, or None if unknown."""
    return lookup_fleet(replica.speeds, dwell_key(threshold_s), SPEEDS)


def lookup_ride_ratio(direction: int | None) -> float | None:
    """Return how long riding took against the ETAs' riding time, for a class of the drop-off's direction or
    the whole fleet (None), if enough arrivals taught it."""
    return lookup_fleet(replica.speeds, ride_key(direction), SPEEDS)


def speed_records(pings: Iterable[Mapping[str, Any]]) -> list[tuple[str, bytes, bytes]]:
    """Return one record per cell key summing the riding speeds a batch of clean pings tells (to
    ``cell-speed-samples``, keyed by cell)."""
    topic = cell_speed_samples_topic.get_topic_name()
    sums = summarize(s for s in (sample_of(p, SPEEDS, replica.lookup) for p in pings) if s is not None)
    return [(topic, key.encode(), encode_sum(*value)) for key, value in sums.items()]


def ride_records(samples: Sequence[tuple[int | None, float]], ts_ms: int) -> list[tuple[str, bytes, bytes]]:
    """Return the records that teach the fleet one arrival's riding ratios (to ``cell-speed-samples``)."""
    topic = cell_speed_samples_topic.get_topic_name()
    return [(topic, ride_key(way).encode(), encode_sum(ratio, 1, ts_ms)) for way, ratio in samples]


def dwell_records(samples: Sequence[tuple[int, float]], ts_ms: int) -> list[tuple[str, bytes, bytes]]:
    """Return the records that teach the fleet a finished stop's dwell samples (to ``cell-speed-samples``)."""
    topic = cell_speed_samples_topic.get_topic_name()
    return [(topic, dwell_key(b).encode(), encode_sum(seconds, 1, ts_ms)) for b, seconds in samples]


async def tail_changelog(
    topic: str,
    partitions: int,
    bootstrap: str,
    into: CellSpeedReplica,
    poll_ms: int = 500,
    security: Mapping[str, Any] | None = None,
) -> None:
    """Read every partition of a changelog from the beginning into the replica, then follow it."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None, **(security or {})
    )
    await consumer.start()
    try:
        # The table declares its partition count; metadata of a topic nobody subscribed to is not cached.
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        while True:
            batches = await consumer.getmany(timeout_ms=poll_ms, max_records=10_000)
            for messages in batches.values():
                for message in messages:
                    into.apply(message.key, message.value)
    finally:
        await consumer.stop()


@app.task
async def replicate_cell_speeds() -> None:
    """Keep this worker's replica of every cell's speed current."""
    topic = cell_speeds.changelog_topic.get_topic_name()
    await tail_changelog(
        topic, settings.partitions, settings.kafka_bootstrap, replica, security=aiokafka_config(settings)
    )
