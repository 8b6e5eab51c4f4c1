"""Kafka plumbing outside Faust, on confluent-kafka (librdkafka): topic administration and fast producers."""

from __future__ import annotations

import time
from concurrent.futures import Future
from typing import Any

from confluent_kafka import (
    Consumer,
    ConsumerGroupTopicPartitions,
    KafkaError,
    KafkaException,
    Producer,
    TopicCollection,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic

from base import topics
from base.exceptions import StackError, TransientError
from base.settings import Settings
from base.tls import librdkafka_config


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Return a librdkafka producer config that partitions keys exactly like Faust's aiokafka producer."""
    return {
        "bootstrap.servers": settings.kafka_bootstrap,
        # librdkafka's default (CRC32) would put a driver on another partition than aiokafka's murmur2
        # does, breaking co-partitioning with everything Faust produces.
        "partitioner": "murmur2_random",
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 5,
        "compression.type": "lz4",
        **librdkafka_config(settings),
        **overrides,
    }


def client_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Return a librdkafka consumer or admin config: the brokers, their security, and ``extra``."""
    return {"bootstrap.servers": settings.kafka_bootstrap, **librdkafka_config(settings), **extra}


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """Build a confluent-kafka producer for this deployment."""
    return Producer(producer_config(settings, **overrides))


def _partition_mismatches(
    existing: dict[str, Any], wanted: dict[str, topics.TopicSpec], partitions: int
) -> list[str]:
    return [
        f"{name} has {len(existing[name].partitions)} partitions, expected {partitions}"
        for name, spec in wanted.items()
        if spec.driver_scoped and name in existing and len(existing[name].partitions) != partitions
    ]


def _settled_metadata(admin: AdminClient, names: list[str], timeout_s: float) -> dict[str, Any]:
    """Return the metadata of ``names`` once each shows its partitions.

    A topic created a moment ago (by us or by a concurrent caller) can show no partitions until its leaders
    are elected; judging its partition count then would report a mismatch that is not there.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        current = {name: admin.list_topics(name, timeout=timeout_s).topics[name] for name in names}
        if all(meta.partitions for meta in current.values()) or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def topic_ids(admin: AdminClient, names: list[str], timeout_s: float = 30.0) -> dict[str, str]:
    """Return each topic's id: a topic deleted and created again (or a broker started afresh) gets a new
    one, and its offsets start over."""
    futures = admin.describe_topics(TopicCollection(names), request_timeout=timeout_s)
    return {name: str(future.result().topic_id) for name, future in futures.items()}


def create_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every pipeline topic that is missing; fail if an existing one breaks co-partitioning.

    Returns the names created. Safe to run any number of times, also concurrently.
    """
    admin = AdminClient(client_config(settings))
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise StackError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    wanted = {topics.qualified(spec.name, settings.topic_prefix): spec for spec in topics.TOPICS}
    mismatched = _partition_mismatches(existing, wanted, settings.partitions)
    if mismatched:
        raise StackError("driver-keyed topics must be co-partitioned: " + "; ".join(mismatched))
    missing = [
        NewTopic(
            name,
            num_partitions=settings.partitions,
            replication_factor=settings.replication_factor,
            config=topics.TOPIC_CONFIGS.get(wanted[name].name, {}),
        )
        for name in wanted
        if name not in existing
    ]
    created: list[str] = []
    raced = False
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items() if missing else []:
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"cannot create topic {name}: {exc}") from exc
            raced = True  # made by someone else since we looked: check what they made
    if raced:
        current = _settled_metadata(admin, list(wanted), timeout_s)
        mismatched = _partition_mismatches(current, wanted, settings.partitions)
        if mismatched:
            raise StackError("driver-keyed topics must be co-partitioned: " + "; ".join(mismatched))
    return created


class DeliveringProducer:
    """Produce batches with librdkafka and block until the broker has acknowledged every record.

    Agents call ``deliver`` through ``asyncio.to_thread``: Faust's ``Topic.send`` costs about 140 µs per
    record, librdkafka's ``produce`` a few µs, and the wait for acknowledgements leaves the event loop free.
    """

    def __init__(self, settings: Settings, **overrides: Any) -> None:
        self._producer = make_producer(settings, **{"linger.ms": 2, **overrides})
        self._errors: list[str] = []

    def _on_delivery(self, error: KafkaError | None, message: Any) -> None:
        if error is not None:
            self._errors.append(f"{message.topic()}: {error}")

    def deliver(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Send (topic, key, value) records; return once all are acknowledged, raise if any failed."""
        produce, poll = self._producer.produce, self._producer.poll
        for topic, key, value in records:
            while True:
                try:
                    produce(topic, value, key, on_delivery=self._on_delivery)
                    break
                except BufferError:
                    poll(0.01)  # the local queue is full: serve delivery reports, then retry
        # A broker that is down makes this wait (back-pressure) rather than let the batch be acked.
        while self._producer.flush(1.0) > 0:
            pass
        if self._errors:
            errors, self._errors = self._errors, []
            raise TransientError(f"{len(errors)} record(s) not delivered, first: {errors[0]}")

    def close(self) -> None:
        self._producer.flush(10.0)


class CommittedOffsets:
    """A group's committed offsets, read the way its own members read them (OffsetFetch from a consumer
    with the group's id that never subscribes, so never joins), over every partition of the deployment's
    topics. It answers ``list_consumer_group_offsets`` like the admin client, which is not used for it:
    librdkafka's admin ListConsumerGroupOffsets aborts the whole process when a broker restarts under it
    (librdkafka#4605, #3663), as the chaos soak saw a worker do.
    """

    def __init__(self, settings: Settings, group: str) -> None:
        self.group = group
        self.prefixes = (settings.topic_prefix, f"{settings.app_id}-")
        config = {"group.id": group, "enable.auto.commit": False}
        self._consumer = Consumer(client_config(settings, **config))

    def list_consumer_group_offsets(
        self, requests: list[ConsumerGroupTopicPartitions], request_timeout: float = 10.0
    ) -> dict[str, Future[ConsumerGroupTopicPartitions]]:
        """Return the group's committed offsets as the admin client's call would, one future per group."""
        metadata = self._consumer.list_topics(timeout=request_timeout)
        partitions = [
            TopicPartition(name, number)
            for name, topic in metadata.topics.items()
            if name.startswith(self.prefixes) and not name.startswith("__")
            for number in topic.partitions
        ]
        committed = self._consumer.committed(partitions, timeout=request_timeout) if partitions else []
        future: Future[ConsumerGroupTopicPartitions] = Future()
        future.set_result(ConsumerGroupTopicPartitions(self.group, committed))
        return {self.group: future}

    def close(self) -> None:
        self._consumer.close()


def consumer_group_backlog(admin: Any, consumer: Any, group: str, timeout_s: float = 10.0) -> int:
    """Return the records a consumer group has yet to commit, summed over every partition it committed.

    ``consumer`` is any confluent-kafka Consumer, used only to read high watermarks. A partition the group
    never committed is not counted (it has no position yet): the backlog of a group that is starting says
    nothing until it commits.
    """
    futures = admin.list_consumer_group_offsets(
        [ConsumerGroupTopicPartitions(group)], request_timeout=timeout_s
    )
    committed = futures[group].result().topic_partitions or []
    backlog = 0
    for tp in committed:
        if tp.offset < 0 or tp.error is not None:
            continue
        _, high = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=timeout_s)
        backlog += max(0, high - tp.offset)
    return backlog
