"""The sink's part of ``whatsup demo``: analyst answers from ClickHouse, checked against the verdicts."""

from __future__ import annotations

import time
from collections import Counter

from base.exceptions import StackError
from base.settings import Settings
from sinks.query import run_query

PINGS_PER_DRIVER = """
SELECT driver_id, count() AS pings, round(sum(step_m) / 1000, 2) AS km, countIf(late) AS late
FROM gps_pings FINAL WHERE startsWith(driver_id, {prefix:String})
GROUP BY driver_id ORDER BY pings DESC, driver_id
"""
REJECTED_BY_REASON = """
SELECT reason, count() AS pings FROM gps_pings_rejected FINAL WHERE startsWith(driver_id, {prefix:String})
GROUP BY reason ORDER BY pings DESC, reason
"""


def _counts(settings: Settings, prefix: str) -> tuple[list[dict[str, object]], Counter[str]]:
    drivers = run_query(settings, PINGS_PER_DRIVER, {"prefix": prefix})
    found: Counter[str] = Counter({"clean": sum(int(str(r["pings"])) for r in drivers)})
    for row in run_query(settings, REJECTED_BY_REASON, {"prefix": prefix}):
        found[str(row["reason"])] = int(str(row["pings"]))
    return drivers, found


def show(settings: Settings, driver_prefix: str, seen: Counter[str], timeout_s: float = 60.0) -> bool:
    """Print what ClickHouse holds of the demo's drivers; True if it is exactly the verdicts ``seen``."""
    print("\nClickHouse (through `whatsup query`, served by the sink process):")
    deadline = time.monotonic() + timeout_s
    try:
        drivers, found = _counts(settings, driver_prefix)
        while found != seen and time.monotonic() < deadline:  # the sink flushes every second or so
            time.sleep(1.0)
            drivers, found = _counts(settings, driver_prefix)
    except StackError as exc:
        print(f"  the sink does not answer: {exc}")
        return False
    print(f"  pings per driver (top 5 of {len(drivers)}):")
    for row in drivers[:5]:
        print(f"    {row['driver_id']:<16} {row['pings']:>6} pings {row['km']:>7} km {row['late']:>4} late")
    print(f"  {'verdict':<20} {'Kafka':>9} {'ClickHouse':>11}")
    for verdict in sorted(set(seen) | set(found), key=lambda v: (v != "clean", v)):
        print(f"  {verdict:<20} {seen[verdict]:>9} {found[verdict]:>11}")
    if found != seen:
        print("  ClickHouse does not hold exactly the verdicts read from Kafka")
        return False
    print("  every verdict is in ClickHouse exactly once")
    return True
