"""What observability costs the pipeline: latency histograms per ping, log redaction, a /metrics render."""

from __future__ import annotations

import logging
import time

from prometheus_client import CollectorRegistry, Histogram, generate_latest

from base import metrics
from base.logs import JsonFormatter, RedactingFilter, record_context
from base.settings import Settings
from benches.harness import Result, Suite

NOTES = (
    "Measured on a machine shared with other test runs (load average about 7 on 2 cores): absolute times "
    "are inflated; the speed-up is measured side by side in the same run.",
    "In-process timings, no broker: the cost observability adds to each ping and each log line.",
    "Per ping, the clean stage observes two histograms (processing and event-time latency), a batch at a "
    "time (base/histogram.py); compare with the stage's own cost per ping in the ping section.",
    "A log line pays the redaction filter (seven regular expressions and the configured secrets) and the "
    "JSON formatter; only rejections of undecodable records log at the default level.",
)


def _per_item_ns(run: object, items: int) -> float:
    started = time.perf_counter()
    run()  # type: ignore[operator]
    return (time.perf_counter() - started) / items * 1e9


def bench_latency_observation(pings: int) -> list[Result]:
    """Time the two histogram observations the clean stage makes per ping."""
    now = time.time()
    event_ts = [int((now - 3.0) * 1000) + i % 1000 for i in range(pings)]
    arrived = [now - 0.2 - (i % 100) / 1000 for i in range(pings)]

    def run() -> None:
        metrics.observe_processing_latency("bench", now, arrived)
        metrics.observe_event_latency("bench", now, event_ts)

    per_ping = _per_item_ns(run, pings)
    metrics.PROCESSING_LATENCY.remove("bench")
    metrics.STAGE_LATENCY.remove("bench")
    # The same two observations per ping with prometheus-client's Histogram, side by side.
    registry = CollectorRegistry()
    reference = Histogram(
        "bench_seconds", "", ["stage"], buckets=metrics.PROCESSING_BUCKETS, registry=registry
    )

    def run_reference() -> None:
        child = reference.labels("bench")
        for value in arrived:
            child.observe(now - value)
            child.observe(now - value)

    per_ping_reference = _per_item_ns(run_reference, pings)
    return [
        Result("latency histograms, per ping (batched)", per_ping, "ns", f"{pings:,} pings, both histograms"),
        Result(
            "same with Histogram.observe per ping",
            per_ping_reference,
            "ns",
            "prometheus-client, for comparison",
        ),
        Result("batched speed-up", per_ping_reference / per_ping, "ratio", ""),
    ]


def bench_log_line(lines: int) -> list[Result]:
    """Time redacting and formatting one log line as JSON."""
    redactor = RedactingFilter(["s" * 40, "meta-access-token-value"])
    formatter = JsonFormatter()
    context = record_context(stage="clean", topic="gps.pings.raw", partition=3, offset=41, reason="malformed")

    def run() -> None:
        for i in range(lines):
            record = logging.LogRecord(
                "bench", logging.WARNING, __file__, 1, "ping rejected: %s from %s", ("bad bytes", i), None
            )
            record.__dict__.update(context)
            redactor.filter(record)
            formatter.format(record)

    return [Result("JSON log line, redacted", _per_item_ns(run, lines), "ns", f"{lines:,} lines")]


def bench_metrics_render(renders: int) -> list[Result]:
    """Time rendering this process's /metrics page, and its size."""
    started = time.perf_counter()
    for _ in range(renders):
        page = generate_latest()
    elapsed_ms = (time.perf_counter() - started) / renders * 1000
    return [
        Result("/metrics render", elapsed_ms, "ms", f"{renders} renders of this process's registry"),
        Result("/metrics size", len(page) / 1024, "KiB", ""),
    ]


def run(settings: Settings, quick: bool) -> list[Result]:
    """Run the observability benchmarks."""
    results = bench_latency_observation(10_000 if quick else 200_000)
    results += bench_log_line(2_000 if quick else 50_000)
    results += bench_metrics_render(20 if quick else 200)
    return results


SUITE = Suite("telemetry", "Observability overhead", run, NOTES)
