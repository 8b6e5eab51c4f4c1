"""The sink runner's thread handoff: the writer gets the GIL back soon while the consumer stages records."""

from __future__ import annotations

import statistics
import sys
import threading
import time

from sinks.runner import GIL_SWITCH_INTERVAL_S, quick_gil_handoff


def _gil_return_delays(samples: int = 60) -> float:
    """Median time to get the GIL back after a blocking call while another thread runs Python."""
    stop = threading.Event()

    def stage_records() -> None:  # stands in for the consumer thread: pure Python, never blocking
        total = 0
        while not stop.is_set():
            for i in range(1000):
                total += i

    busy = threading.Thread(target=stage_records)
    busy.start()
    try:
        delays = []
        for _ in range(samples):
            started = time.perf_counter()
            time.sleep(0)  # gives the GIL up, as every engine call and file write of the writer does
            delays.append(time.perf_counter() - started)
        return statistics.median(delays)
    finally:
        stop.set()
        busy.join()


def test_the_switch_interval_is_short_while_the_runner_runs_and_restored_after() -> None:
    before = sys.getswitchinterval()
    with quick_gil_handoff():
        assert sys.getswitchinterval() == min(before, GIL_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == before


def test_a_thread_returning_from_a_blocking_call_waits_less_for_the_gil() -> None:
    default = _gil_return_delays()
    with quick_gil_handoff():
        quick = _gil_return_delays()
    # CPython makes it wait out the switch interval (5 ms by default) before the busy thread lets go.
    assert quick < default / 2, (quick, default)
