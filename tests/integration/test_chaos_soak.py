"""The chaos soak, shortened: one fault of each kind during a small fleet's load, nothing lost or doubled.

Two ingest processes, two workers, the sink, the sender and the Meta sandbox run a 150-driver fleet with
deliveries, WhatsApp messages for the sender and signed Meta webhooks from registered drivers, for two and
a half minutes; meanwhile a worker is killed with SIGKILL and started again, the broker is restarted, the
sink's engine is down for 15 s, Redis for 15 s, and the Meta sandbox answers 500 for 20 s. The broker and
Redis are this module's own, since they are restarted. The full soak (ten minutes at 1,000 pings/s, a kill
every 30 s) is ``whatsup bench --only soak``.
"""

from __future__ import annotations

from pathlib import Path

from base.settings import Settings
from loadtest.chaos import ChaosPlan
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetRun, run_fleet
from loadtest.soak import own_stack

PLAN = ChaosPlan(
    kill_worker_every_s=15.0,
    max_worker_kills=1,
    broker_restart_at_s=35.0,
    sink_down_at_s=60.0,
    sink_down_s=15.0,
    redis_down_at_s=85.0,
    redis_down_s=15.0,
    meta_errors_at_s=105.0,
    meta_errors_s=20.0,
)


def test_one_fault_of_each_kind_loses_and_doubles_nothing(tmp_path: Path) -> None:
    base = Settings.from_env({"WHATSUP_DATA_DIR": str(tmp_path / "var"), "WHATSUP_PARTITIONS": "4"})
    run = FleetRun(FleetConfig(drivers=150, minutes=2.5), warmup_s=10.0, ingest=2, workers=2, chaos=PLAN)
    with own_stack(base, tmp_path / "stack") as (settings, stack):
        outcome = run_fleet(settings, run, "chaos", say=print, stack=stack)
    soak = outcome.soak
    assert soak is not None
    print(f"soak: faults {soak.faults}; exits restarted {soak.restarts}; tracebacks {soak.tracebacks}")
    assert [kind for _, kind, _ in soak.faults] == [
        "kill_worker",
        "broker_restart",
        "sink_down",
        "redis_down",
        "meta_errors",
    ], soak.faults
    assert soak.repair_errors == []
    assert outcome.topics is not None and outcome.topics.ok, outcome.topics
    assert outcome.clickhouse is not None and outcome.clickhouse.ok, outcome.clickhouse
    assert len(outcome.load.accepted) > 1_000
    assert soak.messages_acked > 1_000 and soak.messages_lost == 0 and soak.messages_twice == 0, soak
    hooks = soak.webhooks
    print(f"soak: webhooks {hooks}")
    assert hooks.sent > 500 and hooks.unanswered == 0, hooks
    assert hooks.lost == 0 and hooks.twice == 0, hooks
    assert soak.alerts_twice == 0
    assert soak.control_lost > 0, "the negative control lost nothing: the accounting cannot see a loss"
