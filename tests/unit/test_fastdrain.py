"""The inline delivery of the consumer loop: same outcome as Faust's wait_first, without tasks when idle."""

from __future__ import annotations

import asyncio

import pytest
from mode import Service

from streams.pings.fastdrain import deliver


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
