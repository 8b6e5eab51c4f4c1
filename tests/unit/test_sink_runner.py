"""The sink runner's thread handoff: a short switch interval while it runs, the old one restored after.

How much sooner the writer gets the GIL back is a timing: it shows in the sink benchmark, not in a unit test.
"""

from __future__ import annotations

import sys

from sinks.runner import GIL_SWITCH_INTERVAL_S, quick_gil_handoff


def test_the_switch_interval_is_short_while_the_runner_runs_and_restored_after() -> None:
    before = sys.getswitchinterval()
    with quick_gil_handoff():
        assert sys.getswitchinterval() == min(before, GIL_SWITCH_INTERVAL_S)
    assert sys.getswitchinterval() == before
