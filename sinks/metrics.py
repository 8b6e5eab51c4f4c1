"""Prometheus metrics of the ClickHouse sink (``whatsup_sink_*``), served on WHATSUP_SINK_PORT."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

ROWS = Counter("whatsup_sink_rows_total", "Rows inserted into ClickHouse", ["table"])
FLUSH_SECONDS = Histogram(
    "whatsup_sink_flush_duration_seconds",
    "Time to write one batch (ledger, insert, dead letters), seconds",
    ["table"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
INSERT_ROWS = Histogram(
    "whatsup_sink_insert_rows",
    "Rows per ClickHouse insert",
    ["table"],
    buckets=(1, 10, 100, 1000, 5000, 10_000, 50_000, 100_000),
)
DEAD_LETTERS = Counter(
    "whatsup_sink_dead_letters_total", "Records sent to the sink's dead-letter topic", ["table", "reason"]
)
REPLAYS_DROPPED = Counter(
    "whatsup_sink_replays_dropped_total", "Records dropped as replays of a record already written", ["table"]
)
INSERT_FAILURES = Counter(
    "whatsup_sink_insert_failures_total", "Inserts that failed and will be retried", ["table"]
)
PAUSED = Gauge("whatsup_sink_paused", "1 while consumption is paused because ClickHouse is unavailable")
LAG = Gauge(
    "whatsup_sink_lag_records", "Records on the topic not yet written, as of the last flush", ["topic"]
)
ERASURES = Counter(
    "whatsup_sink_erasures_total",
    "LGPD erasure requests by outcome: applied, retried (ClickHouse refused for now), malformed",
    ["outcome"],
)
