"""An asyncio face on a librdkafka producer: ``send_all`` returns once the broker acknowledged every record.

The webhook answers only after its records are durable. librdkafka does the batching and the I/O in its own
threads; a small poller thread turns its delivery reports into the waiting requests' futures, so the event
loop spends microseconds per record where aiokafka spends a large share of a request's budget.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from confluent_kafka import KafkaError, KafkaException

from streams.kafka import make_producer
from streams.settings import Settings


class AsyncProducer:
    """Produce (topic, key, value) records and await their acknowledgement (acks=all, idempotent)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._producer: Any = None
        self._poller: threading.Thread | None = None
        self._running = False

    def start(self) -> None:
        """Create the producer and start serving its delivery reports."""
        if self._producer is not None:
            return
        self._producer = make_producer(self.settings, **{"linger.ms": 1})
        self._running = True
        self._poller = threading.Thread(target=self._poll, name="webhook-producer-poller", daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while self._running:
            self._producer.poll(0.05)

    def stop(self) -> None:
        """Deliver what is queued (up to 10 s) and stop the poller."""
        if self._producer is None:
            return
        self._running = False
        if self._poller is not None:
            self._poller.join(5)
        self._producer.flush(10)
        self._producer = None

    async def send_all(self, records: list[tuple[str, str, bytes]], timeout_s: float = 10.0) -> None:
        """Send (topic, key, value) records; raise KafkaException or TimeoutError unless all are acknowledged.

        A timeout does not withdraw the records: they may still land, and the provider's retry may add them
        again (at least once; every consumer keys its work by the message id).
        """
        if not records:
            return
        if self._producer is None:
            self.start()
        loop = asyncio.get_running_loop()
        futures = []
        for topic, key, value in records:
            future: asyncio.Future[None] = loop.create_future()
            futures.append(future)
            self._produce(topic, key.encode(), value, self._reporter(loop, future))
        await asyncio.wait_for(asyncio.gather(*futures), timeout_s)

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                self._producer.poll(0.01)  # the local queue is full: let reports drain, then retry

    @staticmethod
    def _reporter(loop: asyncio.AbstractEventLoop, future: asyncio.Future[None]) -> Any:
        def report(error: KafkaError | None, message: Any) -> None:
            def settle() -> None:
                if future.done():
                    return
                if error is None:
                    future.set_result(None)
                else:
                    future.set_exception(KafkaException(error))

            loop.call_soon_threadsafe(settle)

        return report
