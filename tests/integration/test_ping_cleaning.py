"""Simulated fleets through the real API, broker and worker: every ping gets exactly its expected verdict,
also when the worker is killed with SIGKILL in the middle of the stream."""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path

import httpx

from base.settings import Settings
from simulator.model import Faults, SimConfig, simulate
from simulator.run import post_through_api, produce_to_kafka, write_truth
from simulator.verify import collect_verdicts, compare
from tests.integration.stack import WorkerProcess, free_port


def _long_backlogs(drivers: int, minutes: float, end_ms: int, prefix: str) -> SimConfig:
    """Phones pinging every second, offline for up to 400 pings, backlog shuffled, lost pings, replays."""
    faults = Faults(offline=1.0, shuffle=1.0, replay=1.0, lost=0.1)
    return SimConfig(
        drivers=drivers,
        minutes=minutes,
        interval_s=1.0,
        end_ms=end_ms,
        seed=13,
        max_gap_ticks=400,
        faults=faults,
        driver_prefix=prefix,
    )


def test_a_simulated_fleet_through_the_api_matches_its_ground_truth(
    stack_settings: Settings, worker: WorkerProcess, tmp_path: Path
) -> None:
    end_ms = int(time.time() * 1000)
    runs = simulate(SimConfig(drivers=30, minutes=20, end_ms=end_ms, seed=11, driver_prefix="api"))
    runs += simulate(_long_backlogs(drivers=4, minutes=20, end_ms=end_ms, prefix="api-long"))
    truth = write_truth(runs, tmp_path / "truth")
    assert stack_settings.token_secret is not None
    report = asyncio.run(post_through_api(runs, worker.url, stack_settings.token_secret))
    expected_total = sum(truth["expected"].values())
    assert report.pings == expected_total

    verdicts = collect_verdicts(stack_settings, "api-", expected_total, timeout_s=90)
    assert compare(truth["per_driver"], verdicts) == []
    assert verdicts.exact_replays == 0  # nothing crashed, so nothing was replayed
    assert set(truth["expected"]) >= {
        "clean",
        "duplicate",
        "implausible_speed",
        "null_island",
        "low_accuracy",
    }

    # The worker counts every verdict by reason for Prometheus, with no driver in any label.
    metrics = httpx.get(f"{worker.url}/metrics", timeout=10).text
    for reason, count in truth["expected"].items():
        if reason == "clean":
            pattern = r'^whatsup_pings_accepted_total\{late="(?:true|false)"\} ([0-9.e+]+)$'
        else:
            pattern = rf'^whatsup_pings_rejected_total\{{reason="{reason}",stage="clean"\}} ([0-9.e+]+)$'
        assert sum(float(v) for v in re.findall(pattern, metrics, re.M)) == count, reason
    assert "api-0" not in metrics


def _wait_for_progress(settings: Settings, prefix: str, at_least: int, timeout_s: float = 120) -> int:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        # One read from the start until the count is reached: tens of thousands of verdicts take seconds.
        remaining = max(1.0, deadline - time.monotonic())
        seen = collect_verdicts(settings, prefix, at_least, timeout_s=remaining, settle_s=0).total()
        if seen >= at_least:
            return seen
    raise AssertionError(f"fewer than {at_least} verdicts within {timeout_s}s")


def test_kill_9_mid_stream_loses_nothing_and_judges_nothing_twice(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    end_ms = int(time.time() * 1000)
    runs = simulate(SimConfig(drivers=200, minutes=30, end_ms=end_ms, seed=5, driver_prefix="k9"))
    runs += simulate(_long_backlogs(drivers=5, minutes=20, end_ms=end_ms, prefix="k9-long"))
    truth = write_truth(runs, tmp_path / "truth")
    expected_total = sum(truth["expected"].values())
    produce_to_kafka(runs, stack_settings)

    worker = WorkerProcess(stack_env, tmp_path / "worker.log")
    try:
        for fraction in (0.2, 0.55):
            worker.start()
            _wait_for_progress(stack_settings, "k9-", int(expected_total * fraction))
            worker.kill()  # SIGKILL: no flush, no commit, no goodbye
        worker.start()
        verdicts = collect_verdicts(stack_settings, "k9-", expected_total, timeout_s=180)
    finally:
        worker.stop()  # also when a wait above fails: no worker outlives its test

    assert compare(truth["per_driver"], verdicts) == []
    assert verdicts.conflicts == []
    print(f"{expected_total} pings, {verdicts.exact_replays} exact replays after two SIGKILLs")


def test_workers_joining_and_leaving_mid_stream_lose_nothing(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    """Rebalances while batches sit in stream buffers: each one skipped there must be read again."""
    end_ms = int(time.time() * 1000)
    runs = simulate(SimConfig(drivers=300, minutes=30, end_ms=end_ms, seed=17, driver_prefix="rb"))
    truth = write_truth(runs, tmp_path / "truth")
    expected_total = sum(truth["expected"].values())
    produce_to_kafka(runs, stack_settings)

    first = WorkerProcess(stack_env, tmp_path / "first.log")
    second_env = {
        **stack_env,
        "WHATSUP_DATA_DIR": f"{stack_env['WHATSUP_DATA_DIR']}-second",
        "WHATSUP_WEB_PORT": str(free_port()),
    }
    second = WorkerProcess(second_env, tmp_path / "second.log")
    try:
        first.start()  # it takes every partition and starts judging a full backlog
        second.start()  # joins mid-batch: half the partitions move
        _wait_for_progress(stack_settings, "rb-", int(expected_total * 0.6))
        second.kill()  # its partitions move back mid-batch
        verdicts = collect_verdicts(stack_settings, "rb-", expected_total, timeout_s=180)
    finally:
        first.stop()
        second.stop()

    assert compare(truth["per_driver"], verdicts) == []
    assert verdicts.conflicts == []
    print(f"{expected_total} pings, {verdicts.exact_replays} exact replays across three rebalances")
