"""Records an agent sends itself and waits for: its own librdkafka producer, made at the first send."""

from __future__ import annotations

import asyncio

from base.kafka import DeliveringProducer
from base.settings import Settings


class RecordSender:
    """Send (topic, key, value) records and wait until the broker has acknowledged all of them.

    Each agent module has its own: a send waits for every record in flight on its producer, so sharing one
    would make each agent wait for the others' records.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: DeliveringProducer | None = None

    async def deliver(self, records: list[tuple[str, bytes, bytes]]) -> None:
        """Send the records; return once the broker has them all."""
        if self._producer is None:
            self._producer = DeliveringProducer(self.settings)
        if records:
            await asyncio.to_thread(self._producer.deliver, records)
