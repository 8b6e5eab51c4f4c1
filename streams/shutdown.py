"""A worker that is told to stop, stops: Faust's wait for unacknowledged records gets a deadline.

On stop, Faust waits until every record handed to a stream has been acknowledged (``Consumer.wait_empty``,
from ``App._stop_consumer`` and ``Consumer.on_stop``), with no limit. An agent stopped while a record sat in
its ``take_events`` buffer never acknowledges it, so a worker given SIGTERM could wait for ever, logging
``wait_empty: Waiting for tasks`` every ten seconds, until something killed it. Here the wait ends after
``WHATSUP_STOP_WAIT_S``: the offsets acknowledged so far are committed and the worker goes on stopping. The
records not acknowledged are not committed, so the next owner of their partitions reads them again; the
agents are built for that (they skip what their state has already applied), exactly as after a kill -9.

Faust waits twice on the way out (``App._stop_consumer``, then ``Consumer.on_stop``); the deadline is the
stop's, so the second wait only commits. Only the stop is bounded; a rebalance waits as Faust does.
"""

from __future__ import annotations

import logging
import time
import weakref

from faust.transport.consumer import Consumer

logger = logging.getLogger(__name__)

# Consumers whose stop has already spent its wait.
_waited: weakref.WeakSet[Consumer] = weakref.WeakSet()


async def drain_acks(consumer: Consumer, wait_s: float) -> int:
    """Commit as records are acknowledged, for at most ``wait_s``; return how many stayed unacknowledged."""
    started = time.monotonic()
    deadline = started + wait_s
    while not consumer.should_stop and consumer._unacked_messages and time.monotonic() < deadline:
        await consumer.commit()
        if not consumer._unacked_messages:
            break
        await consumer._wait_for_ack(timeout=min(1.0, max(deadline - time.monotonic(), 0.0)))
        consumer._clean_unacked_messages()
    left = len(consumer._unacked_messages)
    if left:
        logger.warning(
            "stopping with %d record(s) not acknowledged after %.1f s; the next owner reads them again",
            left,
            time.monotonic() - started,
        )
    await consumer.commit_and_end_transactions()
    return left


async def wait_on_stop(consumer: Consumer, wait_s: float) -> None:
    """Wait for acknowledgements once per stop, at most ``wait_s``; a later call of the stop only commits."""
    if consumer in _waited:
        await consumer.commit_and_end_transactions()
        return
    _waited.add(consumer)
    await drain_acks(consumer, wait_s)


def install(wait_s: float) -> None:
    """Bound every Faust consumer's wait for acknowledgements to ``wait_s`` seconds once its app stops."""
    wait_unbounded = Consumer.wait_empty

    async def wait_empty(self: Consumer) -> None:
        if self.app.should_stop:  # the app's stop (App._stop_consumer, Consumer.on_stop), not a rebalance
            await wait_on_stop(self, wait_s)
        else:
            await wait_unbounded(self)

    Consumer.wait_empty = wait_empty  # type: ignore[method-assign]
