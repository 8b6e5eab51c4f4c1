"""The ``fleet`` suite of ``whatsup bench``: the whole pipeline under a delivery fleet's load.

The specified fleet (20,000 drivers, a fix every 5 s, an upload every 15 s: 4,000 pings/s) runs first, for
a warm-up and ten measured minutes. When a p99 target fails there, smaller fleets run the same way until one
holds every target: the largest fleet this machine carries. Each run reports its latencies, what was lost
or doubled, the consumer groups' backlog and every process's CPU per ping.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable

from base.settings import Settings
from benches.harness import Result, Suite
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetOutcome, FleetRun, run_fleet
from loadtest.run import percentile, summary

# p99 targets, seconds: ingest answer, arrival to verdict, clean ping to state, to alert, to ClickHouse.
TARGETS = {"ingest": 0.2, "verdict": 1.0, "state": 2.0, "alert": 2.0, "visible": 2.0}
CPU_TARGET_US = 250.0
FALLBACK_DRIVERS = (7_500, 5_000, 2_500)


def p99s(outcome: FleetOutcome) -> dict[str, float]:
    """The run's p99 of each target, in seconds."""
    return {
        "ingest": percentile(outcome.load.kind("pings").latencies, 0.99),
        "verdict": percentile(outcome.verdict_s, 0.99),
        "state": percentile(outcome.state_s, 0.99),
        "alert": percentile(outcome.alert_s, 0.99) if outcome.alert_s else 0.0,
        "visible": outcome.visible.get("p99", float("nan")),
    }


def holds(outcome: FleetOutcome) -> bool:
    """Every p99 under its target, nothing lost or twice, and the backlog drained."""
    checks = [outcome.topics, outcome.clickhouse]
    p99 = p99s(outcome)
    return (
        all(check is not None and check.ok for check in checks)
        and all(p99[name] < limit for name, limit in TARGETS.items())
        and outcome.drained_s != float("inf")
    )


def backlog_trend(samples: list[tuple[float, int]]) -> tuple[float, float, int]:
    """Mean backlog over the first and the last third of the samples, and the largest."""
    values = [v for _, v in samples]
    if not values:
        return 0.0, 0.0, 0
    third = max(1, len(values) // 3)
    return sum(values[:third]) / third, sum(values[-third:]) / third, max(values)


def results(outcome: FleetOutcome, label: str) -> list[Result]:
    """The table rows of one run."""
    fleet, load = outcome.run.fleet, outcome.load
    seconds = outcome.window[1] - outcome.window[0]
    pings = load.kind("pings")
    rows = [
        Result(
            f"{label}: drivers",
            fleet.drivers,
            "drivers",
            f"fix every {fleet.fix_s:g} s, upload every {fleet.upload_s:g} s",
        ),
        Result(
            f"{label}: pings accepted per second",
            outcome.pings_in_window / seconds,
            "pings/s",
            f"{seconds:,.0f} s measured after {outcome.run.warmup_s:,.0f} s warm-up",
        ),
        Result(f"{label}: ingest requests per second", len(pings.latencies) / seconds, "req/s", "pings only"),
        Result(
            f"{label}: delivery events per second", len(load.kind("events").latencies) / seconds, "req/s", ""
        ),
    ]
    p99 = p99s(outcome)
    notes = {
        "ingest": "scheduled send to answer (202), open loop",
        "verdict": "arrival at the API (received_ts) to the verdict on its topic",
        "state": "clean ping on its topic to the first driver state persisted with it",
        "alert": f"record that raised it to the alert ({sum(outcome.alert_kinds.values()):,} alerts)",
        "visible": "arrival at the API to the row visible in ClickHouse (inserted_at)",
    }
    for name, limit in TARGETS.items():
        rows.append(
            Result(
                f"{label}: p99 {name}",
                p99[name] * 1000,
                "ms",
                f"{notes[name]}; target < {limit * 1000:,.0f} ms",
            )
        )
    rows.append(
        Result(
            f"{label}: p99 device fix to verdict",
            percentile(outcome.fix_s, 0.99) * 1000,
            "ms",
            f"fresh clean pings; a phone holds a fix up to {fleet.upload_s:g} s before its upload",
        )
    )
    for name, check in (("topics", outcome.topics), ("ClickHouse", outcome.clickhouse)):
        assert check is not None
        rows.append(
            Result(
                f"{label}: lost in {name}",
                check.lost,
                "pings",
                f"of {check.accepted_uploads:,} uploads answered 202"
                + ("" if outcome.drained_s < float("inf") else "; not drained: unprocessed ones count here"),
            )
        )
        rows.append(
            Result(
                f"{label}: twice in {name}",
                check.clean_twice + check.extra,
                "pings",
                "clean twice, or a verdict nobody sent",
            )
        )
    for group, samples in outcome.backlog.items():
        first, last, peak = backlog_trend(samples)
        rows.append(
            Result(
                f"{label}: {group} backlog, first third -> last third",
                last - first,
                "records",
                f"mean {first:,.0f} -> {last:,.0f}, max {peak:,}",
            )
        )
    rows.append(Result(f"{label}: drained after the load", outcome.drained_s, "s", "every group's backlog 0"))
    total = 0.0
    for name in sorted(outcome.cpu_s):
        us = outcome.cpu_us_per_ping(name)
        if name != "loadgen":
            total += us
        rows.append(
            Result(f"{label}: CPU per ping, {name}", us, "us", "process CPU over the measured window")
        )
    rows.append(
        Result(
            f"{label}: CPU per ping, pipeline total",
            total,
            "us",
            f"every process but the broker and the load generator; target <= {CPU_TARGET_US:.0f}",
        )
    )
    return rows


# A process is planned at this share of its core: room for bursts, backlogs after a restart, rebalances.
PLANNED_UTILIZATION = 0.6
CAPACITY_FLEETS = (20_000, 100_000, 500_000)


def role_of(process: str) -> str:
    """The role of a process name of a run (``ingest-2`` -> ``ingest``)."""
    return process.rsplit("-", 1)[0] if process[-1].isdigit() else process


def capacity(outcome: FleetOutcome, fix_s: float = 5.0) -> list[Result]:
    """Processes and partitions each fleet size needs, from this run's CPU per ping of each role.

    Each process is one Python interpreter, so one core at most: a role needing C cores at the planned
    utilization runs ceil(C) processes. Workers need a partition each, and partitions are planned at twice
    the workers, so the fleet can double without repartitioning the driver-keyed topics.
    """
    per_role: dict[str, float] = {}
    for name in outcome.cpu_s:
        if name != "loadgen":
            per_role[role_of(name)] = per_role.get(role_of(name), 0.0) + outcome.cpu_us_per_ping(name)
    rows = []
    for drivers in CAPACITY_FLEETS:
        pings_per_s = drivers / fix_s
        counts = {
            role: max(1, math.ceil(pings_per_s * us / 1e6 / PLANNED_UTILIZATION))
            for role, us in sorted(per_role.items())
        }
        cores = sum(pings_per_s * us / 1e6 for us in per_role.values())
        partitions = 2 * counts.get("worker", 1)
        layout = ", ".join(f"{n} {role}" for role, n in counts.items())
        rows.append(
            Result(
                f"capacity: {drivers:,} drivers ({pings_per_s:,.0f} pings/s)",
                cores,
                "cores",
                f"busy cores at this run's CPU per ping; plan {layout} processes, {partitions} partitions",
            )
        )
    return rows


def fleet_suite(settings: Settings, quick: bool) -> list[Result]:
    """Run the specified fleet, then smaller ones until every target holds."""
    say: Callable[[str], None] = print
    load_start = os.getloadavg()[0]
    if quick:
        run = FleetRun(FleetConfig(drivers=500, minutes=1.5), warmup_s=20.0, ingest=2)
        outcome = run_fleet(settings, run, "quick", say)
        say("\n".join(summary(outcome.load)))
        return results(outcome, "500 drivers")
    rows: list[Result] = [Result("load average (1 min), suite start", load_start, "ratio", "2 cores")]
    outcome = run_fleet(settings, FleetRun(FleetConfig(drivers=20_000, minutes=12.0)), "20k", say)
    rows += results(outcome, "20,000 drivers")
    if not holds(outcome):
        for drivers in FALLBACK_DRIVERS:
            # Five measured minutes each: enough to see whether latency and backlog hold, at half the time.
            fallback = FleetRun(FleetConfig(drivers=drivers, minutes=7.0))
            outcome = run_fleet(settings, fallback, f"{drivers}", say)
            rows += results(outcome, f"{drivers:,} drivers")
            if holds(outcome):
                break
    rows += capacity(outcome)
    # The same load again, a second worker and a second ingest process joining a third into the window.
    fleet = outcome.run.fleet
    measured_s = fleet.minutes * 60 - outcome.run.warmup_s
    doubled = FleetRun(fleet, join_after_s=measured_s / 3)
    label = f"{fleet.drivers:,} drivers, doubled mid-run"
    joined = run_fleet(settings, doubled, "doubled", say)
    rows += results(joined, label)
    before = pipeline_us(outcome)
    rows.append(
        Result(
            f"{label}: CPU per ping, pipeline total / single set",
            pipeline_us(joined) / before,
            "ratio",
            f"{pipeline_us(joined):,.0f} against {before:,.0f} us; the joining processes' start and table "
            "recovery included",
        )
    )
    rows.append(Result("load average (1 min), suite end", os.getloadavg()[0], "ratio", "2 cores"))
    return rows


def pipeline_us(outcome: FleetOutcome) -> float:
    """CPU per ping summed over every process of the run but the load generator."""
    return sum(outcome.cpu_us_per_ping(name) for name in outcome.cpu_s if name != "loadgen")


FLEET_NOTES = (
    "Everything runs on this machine's two cores: the broker, Redis, a `whatsup ingest` process, the"
    " worker, the sink with its embedded ClickHouse, and the load generator (this process); in the doubled"
    " run a second ingest process (sharing the first one's port) and a second worker join.",
    "The load is open loop (`loadtest/run.py`): each request leaves at its scheduled time whatever the"
    " answers' speed, and its latency counts from that time, so queueing anywhere is included.",
    "The fleet (`loadtest/fleet.py`) is the delivery simulator's day per driver (assignments, pickups,"
    " arrivals, deliveries, stalls, jams, phones offline, late uploads, frozen GPS) with the phone faults"
    " in the phone simulator's shares (duplicates, spikes, (0, 0), poor accuracy, bad clocks, replays).",
    "Latencies come from the records: Kafka's timestamp of each verdict, state and alert against the time the"
    " record that caused it arrived, and ClickHouse's inserted_at against the ping's arrival.",
    "CPU per ping is each process's CPU seconds over the measured window over the pings accepted in it; the"
    " pipeline total leaves out the broker and the load generator.",
)


SUITE = Suite("fleet", "Fleet: the whole pipeline at the specified fleet size", fleet_suite, FLEET_NOTES)
