"""The recovery watch on Faust's own Recovery service: a changelog partition with records left and none
received resumes once, then the worker exits; a recovery that moves, or has nothing left, is left alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from faust.types import TP

from streams.app import app
from streams.telemetry.recovery import RecoveryWatch, stalled_partitions

LIMIT_S = 60.0
T0 = 1_000.0
KEPT, MOVING, DONE = (TP("whatsup-driver_ping_state-changelog", p) for p in (2, 3, 0))


class Consumer:
    """What the watch calls on Faust's consumer: resume_partitions, recorded."""

    def __init__(self) -> None:
        self.resumed: list[set[TP]] = []

    def resume_partitions(self, tps: set[TP]) -> None:
        self.resumed.append(tps)


@pytest.fixture()
def recovery() -> Iterator[Any]:
    """Faust's Recovery service in the state of a recovery that started at T0: 500 records to read on
    KEPT, 200 on MOVING, none on DONE."""
    app.finalize()
    service = app.tables.recovery
    saved = {
        name: getattr(service, name)
        for name in ("in_recovery", "_recovery_started_at", "active_highwaters", "active_offsets")
    }
    service._set_recovery_started()
    service._recovery_started_at = T0
    service.active_highwaters.update({KEPT: 500, MOVING: 400, DONE: 100})
    service.active_offsets.update({KEPT: 0, MOVING: 200, DONE: 100})
    yield service
    service._set_recovery_ended()
    for tp in (KEPT, MOVING, DONE):
        service.active_highwaters.pop(tp, None)
        service.active_offsets.pop(tp, None)
    for name, value in saved.items():
        setattr(service, name, value)


def test_only_partitions_with_records_left_and_none_received_for_the_limit_are_stalled(recovery: Any) -> None:
    assert stalled_partitions(recovery, T0 + LIMIT_S - 1, LIMIT_S) == []  # not yet
    recovery._active_events_received_at[MOVING] = T0 + 30  # records arriving
    assert stalled_partitions(recovery, T0 + LIMIT_S + 1, LIMIT_S) == [KEPT]
    assert stalled_partitions(recovery, T0 + 30 + LIMIT_S + 1, LIMIT_S) == [KEPT, MOVING]
    recovery.active_offsets[KEPT] = 500  # read to its end
    assert stalled_partitions(recovery, T0 + 30 + LIMIT_S + 1, LIMIT_S) == [MOVING]
    recovery._set_recovery_ended()
    assert stalled_partitions(recovery, T0 + 10 * LIMIT_S, LIMIT_S) == []


def test_a_stall_resumes_its_partitions_once_then_the_worker_exits(recovery: Any) -> None:
    watch, consumer = RecoveryWatch(LIMIT_S), Consumer()
    assert watch.check(recovery, consumer, T0 + 10) is None and consumer.resumed == []
    assert watch.check(recovery, consumer, T0 + LIMIT_S + 1) == "resumed"
    assert consumer.resumed == [{KEPT, MOVING}]
    assert watch.check(recovery, consumer, T0 + 2 * LIMIT_S) is None  # given as long again
    assert watch.check(recovery, consumer, T0 + 2 * LIMIT_S + 2) == "exit"
    assert consumer.resumed == [{KEPT, MOVING}]


def test_a_resume_that_works_and_a_new_recovery_start_over(recovery: Any) -> None:
    watch, consumer = RecoveryWatch(LIMIT_S), Consumer()
    assert watch.check(recovery, consumer, T0 + LIMIT_S + 1) == "resumed"
    # The resumed partitions deliver: nothing stalled any more.
    recovery._active_events_received_at.update({KEPT: T0 + LIMIT_S + 3, MOVING: T0 + LIMIT_S + 3})
    assert watch.check(recovery, consumer, T0 + 2 * LIMIT_S + 2) is None
    # A later rebalance starts another recovery, stalled in turn: resumed first, not exited at once.
    recovery._set_recovery_started()
    recovery._recovery_started_at = T0 + 500
    assert watch.check(recovery, consumer, T0 + 500 + LIMIT_S + 1) == "resumed"
    assert len(consumer.resumed) == 2
