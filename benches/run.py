"""Run the suites, in the order of the data flow, and write their sections of docs/BENCHMARKS.md."""

from __future__ import annotations

from collections.abc import Sequence

from base.settings import PROJECT_ROOT, Settings
from benches import console, fleet, fleet_split, fuzz, pings, quality, sender, sink, soak, telemetry, webhooks
from benches.harness import Suite
from benches.report import render_section, update_report


def suites() -> list[Suite]:
    """Every benchmark suite, in the order of the data flow."""
    return [
        pings.SUITE,
        fleet.SUITE,
        fleet_split.SUITE,
        quality.SUITE,
        sender.SUITE,
        sink.SUITE,
        webhooks.SUITE,
        console.SUITE,
        telemetry.SUITE,
        fuzz.SUITE,
        soak.SUITE,
    ]


def run_benchmarks(settings: Settings, quick: bool = False, only: Sequence[str] = ()) -> int:
    """Run the benchmark suites (all, or those named) and write their sections of docs/BENCHMARKS.md."""
    chosen = [s for s in suites() if not only or s.name in only]
    unknown = set(only) - {s.name for s in suites()}
    if unknown:
        print(f"unknown suite(s): {', '.join(sorted(unknown))}; known: {', '.join(s.name for s in suites())}")
        return 2
    path = PROJECT_ROOT / "docs" / "BENCHMARKS.md"
    command = "make bench" if not only else "whatsup bench --only " + " ".join(only)
    for suite in chosen:
        results = suite.run(settings, quick)
        for r in results:
            print(f"{r.name:<52} {r.value:>14,.2f} {r.unit:<12} {r.note}")
        if not quick:
            text = path.read_text() if path.exists() else ""
            path.write_text(update_report(text, suite, render_section(suite, results, command)))
            print(f"{suite.name}: written to docs/BENCHMARKS.md")
    return 0
