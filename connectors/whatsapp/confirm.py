"""Find out from whatsapp.status whether a message whose send is in doubt reached the provider.

Both the sender (after the provider's answer) and the webhook (from the provider's status callback, which
carries the message key in ``biz_opaque_callback_data``) write there, keyed by message key, so one
partition, read from shortly before the doubtful attempt, holds the answer.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.partitioner import DefaultPartitioner

from base.exceptions import SchemaError
from schemas.codecs import codec

CONFIRMING = frozenset({"sent", "delivered", "read"})
# Clocks of the sender, the webhook and the broker differ a little; look back generously.
LOOKBACK_MS = 5 * 60_000


async def find_confirmation(
    bootstrap: str,
    topic: str,
    partitions: int,
    message_key: str,
    since_ms: int,
    *,
    max_records: int = 200_000,
    security: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Return a status on ``topic`` showing ``message_key`` was accepted at or after ``since_ms``, or None."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **(security or {})
    )
    await consumer.start()
    try:
        key = message_key.encode()
        # The partition every aiokafka producer (the sender's, Faust's) picks for this key.
        numbers = list(range(partitions))
        tp = TopicPartition(topic, DefaultPartitioner()(key, numbers, numbers))
        consumer.assign([tp])
        found = await consumer.offsets_for_times({tp: max(0, since_ms - LOOKBACK_MS)})
        end = (await consumer.end_offsets([tp]))[tp]
        start = found[tp].offset if found.get(tp) is not None else end
        consumer.seek(tp, start)
        decode, seen = codec("MessageStatus").decode, 0
        while start < end and seen < max_records:
            batch = await consumer.getmany(tp, timeout_ms=1000, max_records=1000)
            for record in batch.get(tp, []):
                seen += 1
                if record.key == key:
                    try:
                        status = decode(record.value)
                    except SchemaError:
                        continue
                    if status["status"] in CONFIRMING:
                        return status
            if await consumer.position(tp) >= end:
                break
        return None
    finally:
        await consumer.stop()


async def read_record(
    bootstrap: str, source: str, timeout_s: float = 10.0, security: Mapping[str, Any] | None = None
) -> bytes | None:
    """Return the value of the record at ``source`` ("topic:partition:offset"), or None if it is gone."""
    topic, partition, offset = source.rsplit(":", 2)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False, **(security or {})
    )
    await consumer.start()
    try:
        tp = TopicPartition(topic, int(partition))
        consumer.assign([tp])
        start = (await consumer.beginning_offsets([tp]))[tp]
        end = (await consumer.end_offsets([tp]))[tp]
        if not start <= int(offset) < end:
            return None  # past retention, or never there
        consumer.seek(tp, int(offset))
        batch = await consumer.getmany(tp, timeout_ms=int(timeout_s * 1000), max_records=1)
        records = batch.get(tp, [])
        return records[0].value if records and records[0].offset == int(offset) else None
    finally:
        await consumer.stop()
