"""The inline delivery of the consumer loop: same outcome as Faust's wait_first, without tasks when idle."""

from __future__ import annotations

import asyncio
import logging

import pytest
from faust.types import TP
from mode import Service

from streams.pings.fastdrain import SEEKS_BEFORE_GAP, InOrder, _in_order, deliver


class _Consumer(Service):
    def __init__(self) -> None:
        super().__init__()
        self.suspend_flow = asyncio.Event()


def test_a_delivery_that_need_not_wait_runs_inline() -> None:
    async def main() -> list[str]:
        consumer, done = _Consumer(), []

        async def callback() -> None:
            done.append(f"tasks={len(asyncio.all_tasks())}")

        tasks = len(asyncio.all_tasks())
        await deliver(consumer, callback())  # type: ignore[arg-type]
        return [*done, f"tasks={tasks}"]

    first, second = asyncio.run(main())
    assert first == second  # no task was created to deliver it


def test_a_delivery_that_waits_finishes_with_its_result() -> None:
    async def main() -> list[str]:
        consumer, room, done = _Consumer(), asyncio.Event(), []

        async def callback() -> None:
            await room.wait()  # a full stream buffer
            done.append("delivered")

        asyncio.get_running_loop().call_later(0.05, room.set)
        await deliver(consumer, callback())  # type: ignore[arg-type]
        return done

    assert asyncio.run(main()) == ["delivered"]


def test_a_suspended_flow_cancels_a_waiting_delivery_as_faust_does() -> None:
    async def main() -> list[str]:
        consumer, room, done = _Consumer(), asyncio.Event(), []

        async def callback() -> None:
            try:
                await room.wait()
                done.append("delivered")
            except asyncio.CancelledError:
                done.append("cancelled")
                raise

        asyncio.get_running_loop().call_later(0.05, consumer.suspend_flow.set)  # a rebalance starts
        await deliver(consumer, callback())  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        return done

    assert asyncio.run(main()) == ["cancelled"]


def test_an_error_in_the_callback_propagates() -> None:
    async def main() -> None:
        async def callback() -> None:
            raise ValueError("bad record")

        await deliver(_Consumer(), callback())  # type: ignore[arg-type]

    with pytest.raises(ValueError, match="bad record"):
        asyncio.run(main())


def test_in_order_expects_the_next_offset_after_a_delivery_and_the_read_offset_after_a_seek() -> None:
    order, tp = InOrder(), TP("raw", 0)
    assert order.expected(tp, None) is None  # a new group: the earliest record, asked of the broker
    order.delivered(tp, 41)
    assert order.expected(tp, 41) == 42  # Faust's read offset is the record it delivered last
    assert order.expected(tp, 30) == 30  # sought back to the committed offset: that one comes next


def test_in_order_seeks_back_before_it_takes_a_jump_for_a_hole_in_the_log() -> None:
    order, tp = InOrder(), TP("raw", 0)
    assert [order.should_seek(tp, 100) for _ in range(SEEKS_BEFORE_GAP)] == [True] * SEEKS_BEFORE_GAP
    assert order.should_seek(tp, 100) is False  # the same jump every time: the records are not there
    assert order.should_seek(tp, 120) is True  # a new expected offset starts again
    order.delivered(tp, 120)
    assert order.should_seek(tp, 121) is True


def test_a_record_ahead_of_the_expected_offset_is_held_back_and_the_partition_sought() -> None:
    class _Seeking:
        log = logging.getLogger("test")

        def __init__(self) -> None:
            self.sought: list[tuple[TP, int]] = []
            self.gaps: list[tuple[TP, int, int]] = []

        async def seek(self, tp: TP, offset: int) -> None:
            self.sought.append((tp, offset))

        async def _add_gap(self, tp: TP, start: int, end: int) -> None:
            self.gaps.append((tp, start, end))

        async def earliest_offsets(self, *tps: TP) -> dict[TP, int]:
            return {tp: 0 for tp in tps}

    async def main() -> tuple[list[bool], _Seeking]:
        consumer, order, tp = _Seeking(), InOrder(), TP("raw", 0)
        order.delivered(tp, 7547)
        verdicts = [await _in_order(consumer, order, tp, 7548, 7547)]  # type: ignore[arg-type]
        order.delivered(tp, 7548)
        # A record fetched before the last seek comes next: 43 records ahead.
        verdicts.append(await _in_order(consumer, order, tp, 7592, 7548))  # type: ignore[arg-type]
        return verdicts, consumer

    verdicts, consumer = asyncio.run(main())
    assert verdicts == [True, False]
    assert consumer.sought == [(TP("raw", 0), 7549)]  # back to the record after the last delivered
    assert consumer.gaps == []  # nothing between was committed unread
