"""Kafka plumbing outside Faust, on confluent-kafka (librdkafka): topic administration and fast producers."""

from __future__ import annotations

from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from streams import topics
from streams.exceptions import StackError
from streams.settings import Settings


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
        **overrides,
    }


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """Build a confluent-kafka producer for this deployment."""
    return Producer(producer_config(settings, **overrides))


def create_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    """Create every pipeline topic that is missing; fail if an existing one breaks co-partitioning.

    Returns the names created. Safe to run any number of times.
    """
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    try:
        existing = admin.list_topics(timeout=timeout_s).topics
    except KafkaException as exc:
        raise StackError(f"cannot reach Kafka at {settings.kafka_bootstrap}: {exc}") from exc
    wanted = {topics.qualified(spec.name, settings.topic_prefix): spec for spec in topics.TOPICS}
    mismatched = [
        f"{name} has {len(existing[name].partitions)} partitions, expected {settings.partitions}"
        for name, spec in wanted.items()
        if spec.driver_scoped and name in existing and len(existing[name].partitions) != settings.partitions
    ]
    if mismatched:
        raise StackError("driver-keyed topics must be co-partitioned: " + "; ".join(mismatched))
    missing = [
        NewTopic(name, num_partitions=settings.partitions, replication_factor=settings.replication_factor)
        for name in wanted
        if name not in existing
    ]
    created: list[str] = []
    if not missing:
        return created
    for name, future in admin.create_topics(missing, operation_timeout=timeout_s).items():
        try:
            future.result()
            created.append(name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"cannot create topic {name}: {exc}") from exc
    return created
