"""The demo's fleet step: simulated phones post their pings through the API, and every verdict is read back
from Kafka and checked against the simulator's ground truth."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from base.settings import Settings
from simulator.model import SimConfig, simulate
from simulator.run import post_through_api, write_truth
from simulator.verify import collect_verdicts, compare


@dataclass(frozen=True)
class FleetShown:
    """What the fleet step found: the driver prefix, the verdicts by kind, and the drivers that differ."""

    prefix: str
    verdicts: Counter[str]
    problems: list[str]
    truth: Path


def show_fleet(
    settings: Settings, url: str, secret: str, *, drivers: int, minutes: float, timeout_s: float
) -> FleetShown:
    """Post a simulated fleet through the API at ``url`` (tokens signed with ``secret``) and print its
    verdicts against the ground truth."""
    prefix = f"demo{uuid.uuid4().hex[:4]}"
    runs = simulate(
        SimConfig(drivers=drivers, minutes=minutes, end_ms=int(time.time() * 1000), driver_prefix=prefix)
    )
    truth = write_truth(runs, settings.data_dir / "demo" / prefix)
    expected: Counter[str] = Counter(truth["expected"])
    print(f"\n{drivers} simulated phones post {minutes:.0f} minutes of pings through the ingest API ...")
    report = asyncio.run(post_through_api(runs, url, secret))
    print(
        f"  {report.pings} pings in {report.requests} requests ({report.seconds:.1f} s, "
        f"{report.retried} rate-limited and retried), {report.flagged_by_api} flagged at once by the API"
    )

    verdicts = collect_verdicts(settings, f"{prefix}-", sum(expected.values()), timeout_s=timeout_s)
    got = verdicts.overall()
    print("\nverdicts on gps.pings.clean / gps.pings.rejected, against the simulator's ground truth:")
    print(f"  {'verdict':<20} {'expected':>9} {'pipeline':>9}")
    for verdict in sorted(set(expected) | set(got), key=lambda v: (v != "clean", v)):
        print(f"  {verdict:<20} {expected[verdict]:>9} {got[verdict]:>9}")
    problems = compare(truth["per_driver"], verdicts)
    return FleetShown(prefix, got, problems, Path(settings.data_dir / "demo" / prefix / "truth.jsonl"))
