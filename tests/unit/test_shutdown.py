"""The bounded wait for acknowledgements when a worker stops."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from streams.shutdown import drain_acks, wait_on_stop


class Message:
    acked = False


class Consumer:
    """The part of Faust's consumer the stop uses: unacked records, commits, and the ack wait."""

    def __init__(self, unacked: int, acked_after_s: float | None) -> None:
        self.should_stop = False
        self._unacked_messages = {Message() for _ in range(unacked)}
        self.acked_at = None if acked_after_s is None else time.monotonic() + acked_after_s
        self.commits = 0
        self.final_commits = 0

    async def commit(self) -> None:
        self.commits += 1

    async def _wait_for_ack(self, timeout: float) -> None:
        await asyncio.sleep(min(timeout, 0.05))
        if self.acked_at is not None and time.monotonic() >= self.acked_at:
            for message in self._unacked_messages:
                message.acked = True

    def _clean_unacked_messages(self) -> None:
        self._unacked_messages = {m for m in self._unacked_messages if not m.acked}

    async def commit_and_end_transactions(self) -> None:
        self.final_commits += 1


def test_a_record_never_acknowledged_stops_the_wait_at_the_deadline() -> None:
    consumer = Consumer(unacked=1, acked_after_s=None)
    started = time.monotonic()
    left = asyncio.run(drain_acks(consumer, wait_s=0.3))  # type: ignore[arg-type]
    waited = time.monotonic() - started
    assert left == 1
    assert 0.3 <= waited < 5.0
    assert consumer.final_commits == 1, "what was acknowledged is still committed"


def test_records_acknowledged_in_time_end_the_wait_early_with_nothing_left() -> None:
    consumer = Consumer(unacked=3, acked_after_s=0.1)
    left = asyncio.run(drain_acks(consumer, wait_s=30.0))  # type: ignore[arg-type]
    assert left == 0
    assert consumer.commits >= 1 and consumer.final_commits == 1


def test_nothing_unacknowledged_commits_once_and_returns() -> None:
    consumer = Consumer(unacked=0, acked_after_s=None)
    assert asyncio.run(drain_acks(consumer, wait_s=30.0)) == 0  # type: ignore[arg-type]
    assert consumer.commits == 0 and consumer.final_commits == 1


def test_the_stop_waits_once_though_faust_asks_twice(caplog: pytest.LogCaptureFixture) -> None:
    consumer = Consumer(unacked=1, acked_after_s=None)

    async def stop() -> tuple[float, float]:
        started = time.monotonic()
        await wait_on_stop(consumer, 0.5)  # type: ignore[arg-type]  # App._stop_consumer
        first = time.monotonic()
        await wait_on_stop(consumer, 0.5)  # type: ignore[arg-type]  # Consumer.on_stop
        return first - started, time.monotonic() - first

    with caplog.at_level(logging.WARNING, logger="streams.shutdown"):
        first, second = asyncio.run(stop())
    assert first >= 0.5
    assert second < 0.25, "the second call must not wait again"
    assert consumer.final_commits == 2, "both calls commit what was acknowledged"
    assert len([r for r in caplog.records if "not acknowledged" in r.getMessage()]) == 1


def test_a_worker_that_cannot_finish_its_stop_exits_at_the_deadline() -> None:
    import subprocess
    import sys

    script = (
        "import logging, time\n"
        "logging.basicConfig(level=logging.INFO)\n"
        "from streams.worker import exit_unless_stopped\n"
        "exit_unless_stopped(0.5, 'SIGTERM')\n"
        "time.sleep(60)\n"
    )
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert done.returncode == 1, done.stderr
    assert time.monotonic() - started < 30, "the process must not have slept its 60 s"
    assert "did not stop within 0.5 s of SIGTERM" in done.stderr
