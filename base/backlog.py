"""The scaling signal: every consuming process samples its own consumer group's whole backlog on a timer.

A process reads the backlog of its whole group (every partition the group committed, owned by it or not),
so every member reports the same number and ``max by (group)`` is the group's. The reads are blocking admin
calls: the worker runs them from its timer in a thread, the sender likewise, the sink in a thread of its own.
A failed read never stops a process: the last value stays up to ``STALE_AFTER_S``, then the series goes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from confluent_kafka import Consumer

from base import metrics, topics
from base.kafka import CommittedOffsets, client_config, consumer_group_backlog
from base.settings import Settings

logger = logging.getLogger(__name__)

# A value older than this says nothing about now: better no series than a stale one on the dashboard.
STALE_AFTER_S = 60.0


class GroupBacklog:
    """Publish the backlog of a role's consumer group as ``whatsup_consumer_group_backlog_messages``."""

    def __init__(
        self,
        role: str,
        group: str,
        admin: Any,
        consumer: Any,
        *,
        timeout_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.role = role
        self.group = group
        self.timeout_s = timeout_s
        self._admin = admin
        self._consumer = consumer
        self._clock = clock
        self._lock = threading.Lock()
        self._closed = False
        self._last_ok: float | None = None
        self._failing = False

    @classmethod
    def connect(cls, settings: Settings, role: str) -> GroupBacklog:
        """Build the sampler of ``role``'s group with its own admin client and watermark reader."""
        group = topics.consumer_group(role, settings.app_id)
        # It only reads high watermarks: it never subscribes, so it never joins or creates its group.
        consumer = Consumer(client_config(settings, **{"group.id": f"{group}-backlog-probe"}))
        return cls(role, group, CommittedOffsets(settings, group), consumer)

    def publish(self) -> None:
        """Read the group's backlog now and set the gauge (blocking: call it off the event loop)."""
        with self._lock:
            if self._closed:
                return
            try:
                backlog = consumer_group_backlog(self._admin, self._consumer, self.group, self.timeout_s)
            except Exception as exc:  # a broker or group coordinator not answering is no reason to stop
                self._missed(exc)
                return
            if self._failing:
                logger.info("the backlog of consumer group %s is readable again", self.group)
            self._failing = False
            self._last_ok = self._clock()
            metrics.GROUP_BACKLOG.labels(self.role).set(backlog)

    def _missed(self, exc: Exception) -> None:
        log = logger.debug if self._failing else logger.warning
        log("cannot read the backlog of consumer group %s: %s", self.group, exc)
        self._failing = True
        if self._last_ok is not None and self._clock() - self._last_ok > STALE_AFTER_S:
            with contextlib.suppress(KeyError):
                metrics.GROUP_BACKLOG.remove(self.role)
            self._last_ok = None

    def close(self) -> None:
        """Close the watermark reader, after a read in progress (blocking)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._consumer.close()
                if hasattr(self._admin, "close"):
                    self._admin.close()


@contextlib.asynccontextmanager
async def sampling_backlog(settings: Settings, role: str) -> AsyncIterator[GroupBacklog]:
    """Publish ``role``'s group backlog every WHATSUP_METRICS_SAMPLE_S while the block runs."""
    backlog = GroupBacklog.connect(settings, role)

    async def sample_forever() -> None:
        while True:
            await asyncio.to_thread(backlog.publish)
            await asyncio.sleep(settings.metrics_sample_s)

    task = asyncio.create_task(sample_forever(), name=f"{role}-backlog")
    try:
        yield backlog
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await asyncio.to_thread(backlog.close)


@contextlib.contextmanager
def sampling_backlog_in_thread(settings: Settings, role: str) -> Iterator[GroupBacklog]:
    """Publish ``role``'s group backlog every WHATSUP_METRICS_SAMPLE_S from a thread while the block runs."""
    backlog = GroupBacklog.connect(settings, role)
    halt = threading.Event()

    def sample_until_halted() -> None:
        while True:
            backlog.publish()
            if halt.wait(settings.metrics_sample_s):
                return

    thread = threading.Thread(target=sample_until_halted, name=f"{role}-backlog", daemon=True)
    thread.start()
    try:
        yield backlog
    finally:
        halt.set()
        thread.join(backlog.timeout_s * 3)
        backlog.close()
