"""``whatsup sink``: consume every sunk topic with confluent-kafka and feed ``ClickHouseSink``.

Offsets are committed per partition, synchronously, only after the batch up to them is in ClickHouse and
its dead letters are acknowledged by the broker. When ClickHouse fails, the runner pauses every partition
and retries the same batch with exponential backoff (the consumer stays in its group meanwhile), then
resumes: nothing is dropped and nothing crashes.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, TopicPartition

from schemas.codecs import codec
from sinks import metrics
from sinks.clickhouse import ClickHouseSink, DeadLetter, Flushed
from sinks.staging import ROUTES
from streams import topics
from streams.exceptions import TransientError
from streams.kafka import DeliveringProducer
from streams.settings import Settings

log = logging.getLogger(__name__)


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Return the sink's consumer config: its own group, manual commits, big fetches."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        "group.id": f"{settings.app_id}-clickhouse-sink",
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "partition.assignment.strategy": "range",
        "fetch.max.bytes": 32 * 2**20,
        "max.partition.fetch.bytes": 8 * 2**20,
        # A ClickHouse outage is waited out while paused; the group must not evict the sink meanwhile.
        "max.poll.interval.ms": 600_000,
    }


class SinkRunner:
    """Drive one ClickHouseSink from a Kafka consumer until ``stop()``."""

    def __init__(self, settings: Settings, sink: ClickHouseSink, *, max_backoff_s: float = 30.0) -> None:
        self.settings = settings
        self.sink = sink
        self.max_backoff_s = max_backoff_s
        self._prefix = settings.topic_prefix
        self._stopping = threading.Event()
        self._consumer: Consumer | None = None
        self._producer: DeliveringProducer | None = None
        self._dead_topic = topics.qualified(topics.SINK_DEADLETTER, self._prefix)
        self.ready = threading.Event()
        self._names: dict[str, str] = {}

    def stop(self) -> None:
        """Ask the loop to write what it holds, commit, and return."""
        self._stopping.set()

    def _logical(self, kafka_topic: str) -> str:
        name = self._names.get(kafka_topic)
        if name is None:
            name = self._names[kafka_topic] = kafka_topic[len(self._prefix) :]
        return name

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in consumer.committed(partitions, timeout=30):
            committed = tp.offset if tp.offset != OFFSET_INVALID else 0
            self.sink.assign(self._logical(tp.topic), tp.partition, committed)
        log.info("sink assigned %d partition(s)", len(partitions))
        self.ready.set()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self.sink.revoke(self._logical(tp.topic), tp.partition)

    def run(self) -> None:
        """Consume, write and commit until stopped."""
        consumer = self._consumer = Consumer(consumer_config(self.settings))
        self._producer = DeliveringProducer(self.settings)
        names = [topics.qualified(route.topic, self._prefix) for route in ROUTES]
        consumer.subscribe(names, on_assign=self._on_assign, on_revoke=self._on_revoke)
        add, logical = self.sink.add, self._logical
        try:
            while not self._stopping.is_set():
                for message in consumer.consume(num_messages=10_000, timeout=0.1):
                    error = message.error()
                    if error is not None:
                        if error.code() != KafkaError._PARTITION_EOF:
                            log.warning("consumer error: %s", error)
                        continue
                    # partition() and offset() are set on every message without an error
                    add(logical(message.topic()), message.partition(), message.offset(), message.value())  # type: ignore[arg-type]
                self._flush_due()
            self._flush_due(everything=True)
        finally:
            consumer.close()
            self._producer.close()

    def _flush_due(self, everything: bool = False) -> None:
        if everything:
            self.sink.seal_all()
        for topic, partition in self.sink.due():
            while (flushed := self._flush_with_backoff(topic, partition)) is not None:
                self._commit(flushed)

    def _flush_with_backoff(self, topic: str, partition: int) -> Flushed | None:
        delay = 0.2
        paused = False
        consumer = self._consumer
        assert consumer is not None
        try:
            while True:
                try:
                    return self.sink.flush(topic, partition)
                except TransientError as exc:
                    if not paused:
                        consumer.pause(consumer.assignment())
                        metrics.PAUSED.set(1)
                        paused = True
                    log.warning("ClickHouse unavailable, retrying in %.1f s: %s", delay, exc)
                    deadline = time.monotonic() + delay
                    while time.monotonic() < deadline:
                        consumer.poll(0.1)  # serves rebalances; paused partitions return nothing
                        if self._stopping.is_set():
                            raise
                    delay = min(delay * 2, self.max_backoff_s)
        finally:
            if paused:
                consumer.resume(consumer.assignment())
                metrics.PAUSED.set(0)

    def _commit(self, flushed: Flushed) -> None:
        consumer = self._consumer
        assert consumer is not None
        delay = 0.2
        while flushed.dead_letters:
            try:
                self._send_dead_letters(flushed.dead_letters)
                break
            except TransientError as exc:  # the batch is written; its offsets wait for its dead letters
                log.warning("dead letters not delivered, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        kafka_topic = topics.qualified(flushed.topic, self._prefix)
        tp = TopicPartition(kafka_topic, flushed.partition, flushed.next_offset)
        consumer.commit(offsets=[tp], asynchronous=False)
        _, high = consumer.get_watermark_offsets(tp, cached=True)
        if high >= 0:
            metrics.LAG.labels(flushed.topic).set(max(high - flushed.next_offset, 0))

    def _send_dead_letters(self, letters: list[DeadLetter]) -> None:
        encode = codec("SinkDeadLetter").encode
        now = int(time.time() * 1000)
        records = [
            (
                self._dead_topic,
                letter.topic.encode(),
                encode(
                    {
                        "reason": letter.reason,
                        "error": letter.error[:500],
                        "table": letter.table,
                        "source_topic": letter.topic,
                        "source_partition": letter.partition,
                        "source_offset": letter.offset,
                        "value": letter.value,
                        "ts": now,
                    }
                ),
            )
            for letter in letters
        ]
        assert self._producer is not None
        self._producer.deliver(records)
