"""docs/BENCHMARKS.md: one section per suite between markers, so suites update independently."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

from benches.harness import Result, Suite

HEADER = [
    "# Benchmarks",
    "",
    "Each section is written by `make bench` (every suite) or `whatsup bench --only NAME` (one suite), with",
    "the machine and the command that produced it. Ratios are measured side by side in the same run.",
]


def render_section(suite: Suite, results: list[Result], command: str) -> str:
    """Render one suite's results as a Markdown section between markers, so suites update independently."""
    lines = [
        f"<!-- bench:{suite.name} -->",
        f"## {suite.title}",
        "",
        f"Machine: {machine()}. Broker: the local single-node Kafka of `deploy/kafka` on loopback.",
        f"Command: `{command}`, run on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}.",
        "",
        "| measure | value | unit | note |",
        "|---|---:|---|---|",
    ]
    for r in results:
        value = f"{r.value:,.2f}" if r.unit in ("ratio", "ms", "s") else f"{r.value:,.0f}"
        lines.append(f"| {r.name} | {value} | {r.unit} | {r.note} |")
    if suite.notes:
        lines += ["", "Reading the numbers:", ""]
        lines += [f"- {note}" for note in suite.notes]
    lines.append(f"<!-- /bench:{suite.name} -->")
    return "\n".join(lines)


def update_report(text: str, suite: Suite, section: str) -> str:
    """Replace ``suite``'s section of the report ``text`` (or append it), leaving the others untouched."""
    start, end = f"<!-- bench:{suite.name} -->", f"<!-- /bench:{suite.name} -->"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        return before + section + after
    body = text.rstrip() if text.strip() else "\n".join(HEADER)
    return body + "\n\n" + section + "\n"


def machine() -> str:
    """Describe the machine a section was measured on: cores, CPU, memory, system."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    system = f"{platform.system()} {platform.release()}, Python {platform.python_version()}"
    return f"{os.cpu_count()} cores ({cpu}), {mem_gib:.0f} GiB, {system}"
