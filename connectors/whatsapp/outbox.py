"""How the conversation and notify agents hand records to Kafka: librdkafka, acknowledged before returning.

An agent's records are durable before its source offset can be committed, so a crash replays the source
record; every record's id derives from its cause (message id, alert id, ...), which makes the replay
harmless downstream (the sender sends a message_key once, the sink and the clean stage drop repeated ids).
"""

from __future__ import annotations

import asyncio

from base.kafka import DeliveringProducer
from base.settings import Settings


class Outbox:
    """A lazily started producer shared by an agent module."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: DeliveringProducer | None = None

    async def deliver(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Send (topic, key, value) records and wait until the broker has acknowledged all of them."""
        if not records:
            return
        if self._producer is None:
            self._producer = DeliveringProducer(self.settings)
        await asyncio.to_thread(self._producer.deliver, records)
