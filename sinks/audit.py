"""Check that every record of a topic is in ClickHouse exactly once, against the topic's own offsets.

``sink_offsets`` gets one row per record each insert wrote (a plain MergeTree: merges never fold two rows),
so a record written twice shows as a count above the number of distinct offsets, and a record missing as a
hole in the partition's offset range.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sinks.staging import ROUTES_BY_TOPIC

Query = Callable[[str, dict[str, Any]], list[dict[str, Any]]]


def exactly_once_problems(query: Query, topic: str, expected: Mapping[int, tuple[int, int]]) -> list[str]:
    """Compare what ClickHouse holds of ``topic`` with ``expected`` (partition -> [low, high) offsets).

    Returns the problems found, empty when every offset is there exactly once, in the audit table and in
    the event table alike.
    """
    problems = []
    table = ROUTES_BY_TOPIC[topic].table
    source = "_source = 'outbound'" if topic == "whatsapp.outbound" else "1"
    if topic == "whatsapp.status":
        source = "_source = 'status'"
    audit = query(
        "SELECT partition, count() AS rows, uniqExact(offset) AS offsets, min(offset) AS lo,"
        " max(offset) AS hi FROM sink_offsets WHERE topic = {t:String} GROUP BY partition",
        {"t": topic},
    )
    events = query(
        "SELECT _partition AS partition, count() AS rows, uniqExact(_offset) AS offsets,"
        f" min(_offset) AS lo, max(_offset) AS hi FROM {table} WHERE {source} GROUP BY partition",
        {},
    )
    for name, found in (("sink_offsets", audit), (table, events)):
        by_partition = {int(row["partition"]): row for row in found}
        for partition in sorted(set(by_partition) | set(expected)):
            low, high = expected.get(partition, (0, 0))
            row = by_partition.get(partition)
            if row is None:
                if high > low:
                    problems.append(f"{name} p{partition}: none of offsets {low}..{high - 1}")
                continue
            rows, offsets, lo, hi = (int(row[k]) for k in ("rows", "offsets", "lo", "hi"))
            if rows != offsets:
                problems.append(f"{name} p{partition}: {rows - offsets} offset(s) written more than once")
            if offsets != high - low or lo != low or hi != high - 1:
                found_range = f"{offsets} distinct offsets in {lo}..{hi}"
                problems.append(f"{name} p{partition}: {found_range}, expected {low}..{high - 1}")
    return problems
