"""A short fleet run through the real process layout: ingest processes sharing a port, workers, the sink.

Correctness only, never a timing: every ping upload the API answered 202 for has exactly one verdict on the
verdict topics and one row in ClickHouse, no ping is clean twice, and every consumer group drains; also when
a second worker and a second ingest process join mid-run, and the group rebalances under the load; and the
same with the workers split by role, a second process of each role joining.
"""

from __future__ import annotations

from pathlib import Path

from base.settings import Settings
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetOutcome, FleetRun, run_fleet


def test_a_small_fleet_loses_nothing_and_doubles_nothing_while_processes_join(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = _run(stack_env, tmp_path, split_roles=False)
    # The second set joined and took part: the new worker got partitions, the new ingest connections.
    assert set(outcome.cpu_s) == {"sink", "worker-1", "worker-2", "ingest-1", "ingest-2", "loadgen"}
    assert outcome.cpu_s["worker-2"] > 0 and outcome.cpu_s["ingest-2"] > 0


def test_workers_split_by_role_lose_nothing_while_a_second_of_each_role_joins(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    outcome = _run(stack_env, tmp_path, split_roles=True)
    workers = {"worker_clean-1", "worker_clean-2", "worker_deliveries-1", "worker_deliveries-2"}
    assert set(outcome.cpu_s) == {"sink", "ingest-1", "ingest-2", "loadgen", *workers}
    assert all(outcome.cpu_s[name] > 0 for name in workers)
    # The deliveries role kept the drivers' states from the clean role's verdicts, each group drained.
    assert outcome.state_s and set(outcome.backlog) == {"worker-clean", "worker-deliveries", "sink"}


def _run(stack_env: dict[str, str], tmp_path: Path, *, split_roles: bool) -> FleetOutcome:
    """Run the small fleet, a second set of processes joining 20 s in; check every upload's fate."""
    settings = Settings.from_env({**stack_env, "WHATSUP_DATA_DIR": str(tmp_path / "var")})
    run = FleetRun(
        FleetConfig(drivers=120, minutes=1.5),
        warmup_s=10.0,
        ingest=1,
        workers=1,
        join_after_s=20.0,
        split_roles=split_roles,
    )
    outcome = run_fleet(settings, run, "ci", say=lambda line: None)
    load = outcome.load
    statuses = {status for stats in load.stats.values() for status in stats.statuses}
    assert statuses == {202}, f"answers other than 202: {[s.statuses for s in load.stats.values()]}"
    assert len(load.accepted) == load.pings_sent > 1_500
    assert len(load.accepted_events) > 100
    assert outcome.topics is not None and outcome.clickhouse is not None
    for where, check in (("topics", outcome.topics), ("ClickHouse", outcome.clickhouse)):
        assert check.ok, f"{where}: {check}"
        assert check.accepted_uploads == len(load.accepted)
    # The phones' faults reached the judge: replays and duplicates were caught, bad fixes refused.
    assert outcome.reasons["duplicate"] > 0
    assert {"null_island", "low_accuracy", "future_timestamp"} & outcome.reasons.keys()
    assert outcome.drained_s < float("inf")
    return outcome
