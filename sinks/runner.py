"""``whatsup sink``: consume every sunk topic with confluent-kafka and feed ``ClickHouseSink``.

The consumer thread stages records and seals batches; one writer thread inserts them, a topic at a time
(one insert for the batches of all its partitions), and the members' offsets are committed, together and
synchronously, only after the batches up to them are in ClickHouse and their dead letters are acknowledged
by the broker. When ClickHouse fails, the writer retries the
same batch with exponential backoff while the consumer thread pauses every partition (and keeps polling, so
the group keeps it), then resumes: nothing is dropped and nothing crashes. It also pauses while the writer is
more than a few batches behind.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient

from base import topics
from base.exceptions import TransientError
from base.kafka import DeliveringProducer, client_config, topic_ids
from base.settings import Settings
from schemas.codecs import codec
from sinks import metrics
from sinks.clickhouse import ClickHouseSink, DeadLetter, Flushed
from sinks.staging import ROUTES

log = logging.getLogger(__name__)


# How long a thread holding the GIL may keep it from one that wants it back (CPython's default is 5 ms).
# The writer gives the GIL up around every engine call and file operation, a dozen times per batch, and
# while the consumer thread stages records each return used to wait out the full 5 ms: as long, per
# batch, as the engine's own insert.
GIL_SWITCH_INTERVAL_S = 0.0005


@contextmanager
def quick_gil_handoff(interval_s: float = GIL_SWITCH_INTERVAL_S) -> Iterator[None]:
    """Shorten the interpreter's thread switch interval while the block runs; restore it after."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval_s))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Return the sink's consumer config: its own group, manual commits, big fetches."""
    return client_config(
        settings,
        **{
            "group.id": topics.consumer_group("sink", settings.app_id),
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "partition.assignment.strategy": "range",
            "fetch.max.bytes": 32 * 2**20,
            "max.partition.fetch.bytes": 8 * 2**20,
            # A ClickHouse outage is waited out while paused; the group must not evict the sink meanwhile.
            "max.poll.interval.ms": 600_000,
        },
    )


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
        # Batches are written by one writer thread (chDB releases the GIL while it inserts), so consuming
        # and staging the next records overlaps the insert of the previous ones.
        self._work: queue.Queue[str | None] = queue.Queue()
        self._committable: queue.Queue[list[tuple[str, int, int]]] = queue.Queue()
        self._pending: set[str] = set()
        self._lock = threading.Lock()
        self._unwell = threading.Event()
        self._paused = False
        self.max_buffered = 4 * max(settings.sink_batch_size, settings.sink_backlog_batch_size)

    def stop(self) -> None:
        """Ask the loop to write what it holds, commit, and return."""
        self._stopping.set()

    def _logical(self, kafka_topic: str) -> str:
        name = self._names.get(kafka_topic)
        if name is None:
            name = self._names[kafka_topic] = kafka_topic[len(self._prefix) :]
        return name

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        logs = self._log_ids(sorted({tp.topic for tp in partitions}))
        for tp in consumer.committed(partitions, timeout=30):
            committed = tp.offset if tp.offset != OFFSET_INVALID else 0
            self.sink.assign(self._logical(tp.topic), tp.partition, committed, logs[tp.topic])
        log.info("sink assigned %d partition(s)", len(partitions))
        self.ready.set()

    def _log_ids(self, names: list[str]) -> dict[str, str]:
        """Return the topics' ids, asking again for up to a minute: without them no batch can be planned."""
        admin = AdminClient(client_config(self.settings))
        deadline = time.monotonic() + 60
        while True:
            try:
                return topic_ids(admin, names) if names else {}
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    raise TransientError(f"cannot read the ids of {names}: {exc}") from exc
                log.warning("cannot read the ids of %s yet: %s", names, exc)
                time.sleep(1)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Let the writer finish (and commit) what it holds, so the next owner starts after it.
        deadline = time.monotonic() + 30
        while self._work.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.05)
        self._commit_written(consumer)
        for tp in partitions:
            self.sink.revoke(self._logical(tp.topic), tp.partition)

    def run(self) -> None:
        """Consume, write and commit until stopped."""
        with quick_gil_handoff():
            self._run()

    def _run(self) -> None:
        consumer = self._consumer = Consumer(consumer_config(self.settings))
        self._producer = DeliveringProducer(self.settings)
        writer = threading.Thread(target=self._write_loop, name="sink-writer", daemon=True)
        writer.start()
        names = [topics.qualified(route.topic, self._prefix) for route in ROUTES]
        consumer.subscribe(names, on_assign=self._on_assign, on_revoke=self._on_revoke)
        try:
            while not self._stopping.is_set():
                self._stage(consumer.consume(num_messages=10_000, timeout=0.1))
                self._schedule()
                self._steer(consumer)
                self._commit_written(consumer)
            self.sink.seal_all()
            self._schedule()
        finally:
            self._work.put(None)
            writer.join(120)
            self._commit_written(consumer)
            consumer.close()
            self._producer.close()

    def _stage(self, messages: list[Message]) -> None:
        """Hand consumed records to the sink, one run of a partition's consecutive records at a time."""
        add_many = self.sink.add_many
        offsets: list[int] = []
        values: list[bytes | None] = []
        topic: str | None = None
        partition = -1
        for message in messages:
            if message.error() is not None:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning("consumer error: %s", error)
                continue
            # partition() and offset() are set on every message without an error
            if message.partition() != partition or message.topic() != topic:
                if topic is not None and offsets:
                    add_many(self._logical(topic), partition, offsets, values)
                    offsets, values = [], []
                topic, partition = message.topic(), message.partition()  # type: ignore[assignment]
            offsets.append(message.offset())  # type: ignore[arg-type]
            values.append(message.value())
        if topic is not None and offsets:
            add_many(self._logical(topic), partition, offsets, values)

    def _schedule(self) -> None:
        """Hand every topic with a sealed batch to the writer (once until it is done with it)."""
        for topic in self.sink.due():
            with self._lock:
                if topic in self._pending:
                    continue
                self._pending.add(topic)
            self._work.put(topic)

    def _steer(self, consumer: Consumer) -> None:
        """Pause every partition while ClickHouse fails or the writer is far behind; resume after."""
        hold = self._unwell.is_set() or self.sink.buffered() > self.max_buffered
        if hold != self._paused:
            assignment = consumer.assignment()
            (consumer.pause if hold else consumer.resume)(assignment)
            self._paused = hold
            metrics.PAUSED.set(1 if self._unwell.is_set() else 0)

    def _write_loop(self) -> None:
        """Write a topic's sealed batches, group by group in the order they were sealed; commit each."""
        while (topic := self._work.get()) is not None:
            try:
                while flushed := self._flush_with_backoff(topic):
                    self._commit(flushed)
            except Exception:  # never leave the loop: a dead writer would stall the sink silently
                log.exception("writing %s failed; its records are read again at the next start", topic)
            finally:
                with self._lock:
                    self._pending.discard(topic)
                self._work.task_done()
        self._work.task_done()

    def _flush_with_backoff(self, topic: str) -> list[Flushed]:
        delay = 0.2
        while True:
            try:
                flushed = self.sink.flush(topic)
                self._unwell.clear()
                return flushed
            except TransientError as exc:
                self._unwell.set()
                if self._stopping.is_set():
                    log.warning("stopping with %s unwritten; it is read again at the next start", topic)
                    return []
                log.warning("ClickHouse unavailable, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)

    def _commit(self, flushed: list[Flushed]) -> None:
        delay = 0.2
        dead_letters = [letter for done in flushed for letter in done.dead_letters]
        while dead_letters:
            try:
                self._send_dead_letters(dead_letters)
                break
            except TransientError as exc:  # the batch is written; its offsets wait for its dead letters
                log.warning("dead letters not delivered, retrying in %.1f s: %s", delay, exc)
                time.sleep(delay)
                delay = min(delay * 2, self.max_backoff_s)
        # librdkafka's synchronous commit stalls when called beside a consume() in another thread: hand
        # the offsets to the consumer thread, which commits them between two consume() calls. A group's
        # offsets go in one commit: a replay finds either all its members committed or none.
        self._committable.put(
            [
                (topics.qualified(done.topic, self._prefix), done.partition, done.next_offset)
                for done in flushed
            ]
        )

    def _commit_written(self, consumer: Consumer) -> None:
        """Commit the offsets of every batch the writer has finished (consumer thread only)."""
        latest: dict[tuple[str, int], int] = {}
        while True:
            try:
                written = self._committable.get_nowait()
            except queue.Empty:
                break
            for topic, partition, offset in written:
                latest[(topic, partition)] = max(offset, latest.get((topic, partition), 0))
        if not latest:
            return
        tps = [TopicPartition(topic, partition, offset) for (topic, partition), offset in latest.items()]
        consumer.commit(offsets=tps, asynchronous=False)
        for tp in tps:
            _, high = consumer.get_watermark_offsets(tp, cached=True)
            if high >= 0:
                metrics.LAG.labels(self._logical(tp.topic)).set(max(high - tp.offset, 0))

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
