"""The chaos soak's schedule: every fault the plan names, in time order, within the load."""

from __future__ import annotations

from loadtest.chaos import ChaosPlan, Fault, plan_faults


def test_the_default_plan_kills_a_worker_every_30_s_and_breaks_everything_else_once() -> None:
    faults = plan_faults(ChaosPlan(), 600.0)
    kinds = [fault.kind for fault in faults]
    assert kinds.count("kill_worker") == 19  # at 30, 60, ..., 570 s
    assert {k: kinds.count(k) for k in ("broker_restart", "sink_down", "redis_down", "meta_errors")} == {
        "broker_restart": 1,
        "sink_down": 1,
        "redis_down": 1,
        "meta_errors": 1,
    }
    assert [f.at_s for f in faults] == sorted(f.at_s for f in faults)
    assert Fault(270.0, "meta_errors", 60.0) in faults and Fault(130.0, "sink_down", 30.0) in faults


def test_faults_past_the_load_are_left_out_and_kills_can_be_capped() -> None:
    plan = ChaosPlan(
        kill_worker_every_s=20.0, max_worker_kills=1, broker_restart_at_s=40.0, sink_down_at_s=500.0
    )
    faults = plan_faults(plan, 100.0)
    assert [(f.at_s, f.kind) for f in faults] == [(20.0, "kill_worker"), (40.0, "broker_restart")]
    assert plan_faults(ChaosPlan(kill_worker_every_s=0), 100.0) == [Fault(75.0, "broker_restart")]
