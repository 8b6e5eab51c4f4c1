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

from base.kafka import make_producer
from base.settings import Settings


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
        future: asyncio.Future[None] = loop.create_future()
        # One future per batch, settled once: a request of many records wakes the loop once, not per record.
        report = _BatchReport(loop, future, len(records)).report
        for topic, key, value in records:
            self._produce(topic, key.encode(), value, report)
        await asyncio.wait_for(future, timeout_s)

    def _produce(self, topic: str, key: bytes, value: bytes, on_delivery: Any) -> None:
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                self._producer.poll(0.01)  # the local queue is full: let reports drain, then retry


class _BatchReport:
    """Count a batch's delivery reports down and settle its future once: with the first error, or at zero.

    Reports come from the poller thread, and from the loop's thread when a full queue makes ``_produce``
    poll, hence the lock.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[None], pending: int) -> None:
        self.loop, self.future, self.pending = loop, future, pending
        self.error: KafkaError | None = None
        self.settled = False
        self.lock = threading.Lock()

    def report(self, error: KafkaError | None, message: Any) -> None:
        with self.lock:
            self.pending -= 1
            if self.settled or (error is None and self.pending > 0):
                return
            self.settled, self.error = True, error
        self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        if self.future.done():
            return
        if self.error is None:
            self.future.set_result(None)
        else:
            self.future.set_exception(KafkaException(self.error))
