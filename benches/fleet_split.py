"""The ``fleet-split`` suite: one fleet through workers running every agent, then split by role."""

from __future__ import annotations

import os
from collections.abc import Callable

from base.settings import Settings
from benches.fleet import pipeline_us, results
from benches.harness import Result, Suite
from benches.pings import CLEAN_STAGE_TARGET_US
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetRun, run_fleet
from loadtest.run import summary

SPLIT_DRIVERS = 5_000


def split_suite(settings: Settings, quick: bool) -> list[Result]:
    """The same fleet through workers running every agent, then through workers split by role (the clean
    stage in one process, the agents downstream of it in another), side by side; ``quick`` (the demo) runs
    the split workers alone, on a short fleet."""
    say: Callable[[str], None] = print
    if quick:
        fleet = FleetConfig(drivers=500, minutes=1.5)
        split = run_fleet(settings, FleetRun(fleet, warmup_s=20.0, split_roles=True), "split", say)
        say("\n".join(summary(split.load)))
        return results(split, "500 drivers, workers split by role")
    rows: list[Result] = [Result("load average (1 min), suite start", os.getloadavg()[0], "ratio", "2 cores")]
    fleet = FleetConfig(drivers=SPLIT_DRIVERS, minutes=7.0)
    together = run_fleet(settings, FleetRun(fleet), "together", say)
    rows += results(together, f"{fleet.drivers:,} drivers, one worker")
    split = run_fleet(settings, FleetRun(fleet, split_roles=True), "split", say)
    label = f"{fleet.drivers:,} drivers, workers split by role"
    rows += results(split, label)
    clean_us = sum(split.cpu_us_per_ping(name) for name in split.cpu_s if name.startswith("worker_clean"))
    rows.append(
        Result(
            f"{label}: CPU per ping, the clean stage alone",
            clean_us,
            "us",
            f"the clean role's process at this fleet's rate (its target, {CLEAN_STAGE_TARGET_US:.0f}, is"
            " measured on a backlog: suite pings)",
        )
    )
    rows.append(
        Result(
            f"{label}: CPU per ping, pipeline total / one worker",
            pipeline_us(split) / pipeline_us(together),
            "ratio",
            f"{pipeline_us(split):,.0f} against {pipeline_us(together):,.0f} us",
        )
    )
    rows.append(Result("load average (1 min), suite end", os.getloadavg()[0], "ratio", "2 cores"))
    return rows


SPLIT_NOTES = (
    "The fleet of the `fleet` suite at 5,000 drivers (a fleet this machine carries with every target"
    " held), run twice in one suite: once with one worker running every agent, once with the workers split"
    " by `WHATSUP_WORKER_ROLE` into a `clean` process (the clean stage alone) and a `deliveries` process"
    " (driver state, ETAs, alerts, notifications, conversations), each role its own consumer group.",
    "Everything else is as in the `fleet` suite: one sink, one ingest process, the broker, Redis and the"
    " load generator on the same two cores.",
)


SUITE = Suite("fleet-split", "Fleet: workers split by role", split_suite, SPLIT_NOTES)
