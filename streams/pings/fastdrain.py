"""A faster Faust consumer loop: deliver each fetched message without four tasks when nothing waits.

Faust's ``Consumer._drain_messages`` delivers every message with ``wait_first(callback(message),
suspend_flow.wait())``, which creates four tasks per message (the callback, the flow event, the service's
stopped and crashed events) so that a rebalance suspending the flow can cancel a delivery stuck on a full
buffer. That costs more than our cleaning rules. Here the callback coroutine is first stepped inline: when
it finishes without waiting (the usual case: the stream buffer has room and the flow is not suspended),
nothing else could have run in between, so no rebalance can interleave and the result is the same. When it
has to wait, the half-run coroutine is handed to Faust's ``wait_first`` exactly as before, so a suspended
flow still cancels it. Everything else (read offsets, gaps, commit cadence, yielding to the loop, stop and
error handling) is Faust 0.15's loop unchanged, but for one thing: records reach the agents in offset
order (``InOrder``).

Faust's loop trusts the fetcher to hand over a partition's records in order from the position it last
sought. Around a rebalance it may not: a record fetched before the seek back to the committed offset can
come first (faust-streaming/faust#221). Faust then marks every offset between the committed one and that
record as a gap, which commits them unread, and drops them when they arrive because they lie below its
read offset. On a two-worker run that lost 43 pings of one partition. Here a record ahead of the offset
expected next is held back and the partition sought to the expected offset; only when the log really has
no records there (the same jump seen again after seeking: a compacted or transactional topic) is the
span treated as a gap.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Coroutine, Generator
from typing import Any, cast

from aiokafka.errors import IllegalStateError
from faust.transport.consumer import CONSUMER_FETCHING, Consumer
from faust.types import TP
from mode import Service, ServiceT

# Seeks back to an offset before a jump past it is believed to be a real hole in the log.
SEEKS_BEFORE_GAP = 3


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


class InOrder:
    """The offset each partition should deliver next, and the seeks made to get a record there.

    ``read`` is Faust's read offset for the partition: the last record delivered, or after a seek (a
    rebalance, a restart) the committed offset, the next one to read. A read offset this class did not
    leave behind means a seek happened, so the next record expected is at the read offset itself.
    """

    def __init__(self) -> None:
        self._delivered: dict[TP, int] = {}
        self._seeks: dict[TP, tuple[int, int]] = {}  # partition -> (offset sought, how many times)

    def expected(self, tp: TP, read: int | None) -> int | None:
        """Return the offset the partition should deliver next (None: unknown, first read of a new group)."""
        if read is None:
            return None
        return read + 1 if self._delivered.get(tp) == read else read

    def delivered(self, tp: TP, offset: int) -> None:
        """Note a record delivered: the partition is in order up to it."""
        self._delivered[tp] = offset
        self._seeks.pop(tp, None)

    def should_seek(self, tp: TP, expected: int) -> bool:
        """Say whether to seek back to ``expected`` (True) or take the jump past it as a real gap."""
        sought, times = self._seeks.get(tp, (expected, 0))
        times = times + 1 if sought == expected else 1
        self._seeks[tp] = (expected, times)
        return times <= SEEKS_BEFORE_GAP


async def _in_order(self: Consumer, order: InOrder, tp: TP, offset: int, read: int | None) -> bool:
    """Say whether a record may be delivered now; if it lies ahead of the offset expected, seek back."""
    expected = order.expected(tp, read)
    if expected is None:
        # A new group's first read of the partition starts at its earliest record.
        expected = (await self.earliest_offsets(tp)).get(tp)
    if expected is None or offset <= expected:
        return True
    if order.should_seek(tp, expected):
        self.log.info("Record %r of %r came before %r: seeking back", offset, tp, expected)
        # No longer ours (a rebalance): its new owner reads it from the committed offset.
        with contextlib.suppress(IllegalStateError):
            await self.seek(tp, expected)
        return False
    await self._add_gap(tp, expected, offset - 1)
    return True


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
    order = getattr(self, "_whatsup_order", None)
    if order is None:
        order = self._whatsup_order = InOrder()  # type: ignore[attr-defined]
    try:
        while not (consumer_should_stop() or fetcher_should_stop()):
            set_flag(CONSUMER_FETCHING)
            ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
            await self.sleep(0)
            if not self.should_stop:
                sought: set[TP] = set()
                async for tp, message in ait:
                    num_since_yield += 1
                    if num_since_yield > yield_every:
                        await asyncio.sleep(0)
                        num_since_yield = 0
                    if tp in sought:
                        continue  # fetched before this partition was sought back: it comes again
                    offset = message.offset
                    r_offset = get_read_offset(tp)
                    if r_offset is None or offset >= r_offset:
                        if acks_enabled_for(message.topic) and not await _in_order(
                            self, order, tp, offset, r_offset
                        ):
                            sought.add(tp)
                            continue
                        if commit_every is not None and self._n_acked >= commit_every:
                            self._n_acked = 0
                            await self.commit()
                        await deliver(self, cast(Coroutine[Any, Any, Any], callback(message)))
                        set_read_offset(tp, offset)
                        order.delivered(tp, offset)
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
