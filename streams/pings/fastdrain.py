"""A faster Faust consumer loop: deliver each fetched message without four tasks when nothing waits.

Faust's ``Consumer._drain_messages`` delivers every message with ``wait_first(callback(message),
suspend_flow.wait())``, which creates four tasks per message (the callback, the flow event, the service's
stopped and crashed events) so that a rebalance suspending the flow can cancel a delivery stuck on a full
buffer. That costs more than our cleaning rules. Here the callback coroutine is first stepped inline: when
it finishes without waiting (the usual case: the stream buffer has room and the flow is not suspended),
nothing else could have run in between, so no rebalance can interleave and the result is the same. When it
has to wait, the half-run coroutine is handed to Faust's ``wait_first`` exactly as before, so a suspended
flow still cancels it. Everything else (read offsets, gaps, commit cadence, yielding to the loop, stop and
error handling) is Faust 0.15's loop unchanged.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from mode import Service, ServiceT


class _Resume:
    """Await the rest of a coroutine that was stepped once and is waiting on ``pending``."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro, self.pending = coro, pending

    def __await__(self) -> Generator[Any, Any, Any]:
        coro, pending = self.coro, self.pending
        while True:
            try:
                value = yield pending
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as exc:  # cancellation included: the coroutine sees it where it waits
                try:
                    pending = coro.throw(exc)
                except StopIteration as stop:
                    return stop.value
            else:
                try:
                    pending = coro.send(value)
                except StopIteration as stop:
                    return stop.value


async def deliver(consumer: Consumer, coro: Coroutine[Any, Any, Any]) -> None:
    """Run one delivery inline; if it must wait, wait as Faust does (a suspended flow cancels it)."""
    if not consumer.suspend_flow.is_set():
        try:
            pending = coro.send(None)
        except StopIteration:
            return
        await consumer.wait_first(_Resume(coro, pending), consumer.suspend_flow.wait())
        return
    await consumer.wait_first(coro, consumer.suspend_flow.wait())


async def _drain_messages(self: Consumer, fetcher: ServiceT) -> None:  # pragma: no cover
    callback = self.callback
    getmany = self.getmany
    consumer_should_stop = cast(Service, self)._stopped.is_set
    fetcher_should_stop = cast(Service, fetcher)._stopped.is_set
    get_read_offset = self._read_offset.__getitem__
    set_read_offset = self._read_offset.__setitem__
    set_flag, unset_flag = self.diag.set_flag, self.diag.unset_flag
    commit_every = self._commit_every
    acks_enabled_for = self.app.topics.acks_enabled_for
    yield_every, num_since_yield = 100, 0
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        gap = offset - (r_offset or 0)
                        if gap > 1 and r_offset and acks_enabled_for(message.topic):
                            await self._add_gap(tp, r_offset + 1, offset)
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await deliver(self, cast(Coroutine[Any, Any, Any], callback(message)))
                        set_read_offset(tp, offset)
                unset_flag(CONSUMER_FETCHING)
    except self.consumer_stopped_errors:
        if self.transport.app.should_stop:
            return
        raise
    except asyncio.CancelledError:
        if self.transport.app.should_stop:
            return
        raise
    except Exception as exc:
        self.log.exception("Drain messages raised: %r", exc)
        raise
    finally:
        unset_flag(CONSUMER_FETCHING)


def install() -> None:
    """Use this loop for every Faust consumer of the process."""
    Consumer._drain_messages = _drain_messages  # type: ignore[method-assign]
