"""Prometheus metrics of the pipeline; labels stay low-cardinality (never a driver id or a phone number).

Every process (worker, sender, sink) has its own registry, the default one, served on its own port: no
process forks workers, so prometheus-client's multiprocess mode is not needed. Other areas keep their
metrics in their own modules (``sinks/metrics.py``, ``connectors/whatsapp/metrics.py`` ...); the
process-wide ones (build, up, consumer lag and group backlog, tables, stage latency) live here.
"""

from __future__ import annotations

import platform
from collections.abc import Iterable
from importlib import metadata

from prometheus_client import Counter, Gauge, Histogram, Info

from base.histogram import BatchHistogram

PINGS_RECEIVED = Counter("whatsup_pings_received_total", "Pings that reached a stage", ["stage"])
PINGS_ACCEPTED = Counter("whatsup_pings_accepted_total", "Pings emitted clean", ["late"])
PINGS_REJECTED = Counter(
    "whatsup_pings_rejected_total", "Pings rejected, by stage and reason", ["stage", "reason"]
)
PINGS_FLAGGED = Counter(
    "whatsup_ingest_pings_flagged_total",
    "Pings the ingest API reported as failing a stateless rule",
    ["reason"],
)
HTTP_REQUESTS = Counter(
    "whatsup_http_requests_total", "HTTP requests by route and status", ["route", "status"]
)
HTTP_LATENCY = Histogram(
    "whatsup_http_request_duration_seconds",
    "HTTP request latency by route",
    ["route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

# Latencies are observed per record in the agents' hot loops, so a batch at a time (BatchHistogram).
# Event time is the phone's fix time: a phone offline for an hour uploads hour-old pings, so the buckets
# reach a day. This shows freshness as a dispatcher sees it; PROCESSING_LATENCY is the pipeline's own share.
STAGE_LATENCY = BatchHistogram(
    "whatsup_stage_latency_seconds",
    "Event time (the phone's fix) to processed by a stage",
    "stage",
    buckets=(0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 6 * 3600.0, 86400.0),
)
# Arrival in the pipeline (the raw record's Kafka timestamp, stamped at ingest) to processed by a stage:
# what the "processed within 2 s" promise is about.
PROCESSING_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 120.0)
PROCESSING_LATENCY = BatchHistogram(
    "whatsup_processing_latency_seconds",
    "Arrival in the pipeline (Kafka record timestamp) to processed by a stage",
    "stage",
    buckets=PROCESSING_BUCKETS,
)
CONSUMER_LAG = Gauge(
    "whatsup_consumer_lag_messages",
    "Records between the committed offset and the end of each partition this worker consumes",
    ["topic", "partition"],
)
# Every member of a group reports the whole group's backlog (all its partitions, owned or not), so
# ``max by (group)`` is the group's: the scaling signal (docs/RUNBOOK.md, WhatsUpConsumerBacklogHigh).
GROUP_BACKLOG = Gauge(
    "whatsup_consumer_group_backlog_messages",
    "Records the consumer group of this process's role has yet to commit, over all the group's partitions",
    ["group"],
)
TABLE_KEYS = Gauge("whatsup_table_keys", "Keys held in each table on this worker", ["table"])
REBALANCING = Gauge("whatsup_worker_rebalancing", "1 while the worker's consumer group rebalances")
UP = Gauge("whatsup_up", "1 while this process runs its role", ["role"])
BUILD = Info("whatsup_build", "Version of the pipeline and of its main components")


def observe_event_latency(stage: str, now_s: float, event_ts_ms: Iterable[int]) -> None:
    """Record how old each event (by its epoch-ms event time) was when ``stage`` processed it."""
    STAGE_LATENCY.observe_many(stage, (max(0.0, now_s - ts / 1000.0) for ts in event_ts_ms))


def observe_processing_latency(stage: str, now_s: float, arrived_s: Iterable[float]) -> None:
    """Record how long after arriving in the pipeline (epoch seconds) ``stage`` processed each record."""
    PROCESSING_LATENCY.observe_many(stage, (max(0.0, now_s - arrived) for arrived in arrived_s))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def start_worker_series() -> None:
    """Create the worker's known series at zero, so rates and "nothing received" alerts have a series
    before the first ping (other processes import this module too, and must not export them)."""
    for stage in ("edge", "clean"):
        PINGS_RECEIVED.labels(stage)
    for late in ("false", "true"):
        PINGS_ACCEPTED.labels(late)


def mark_up(role: str) -> None:
    """Publish this process's role as up, with the build info, at start-up."""
    BUILD.info(
        {
            "version": _version("whatsup-pipeline"),
            "python": platform.python_version(),
            "faust": _version("faust-streaming"),
            "prometheus_client": _version("prometheus-client"),
        }
    )
    UP.labels(role).set(1)


def mark_down(role: str) -> None:
    """Publish this process's role as stopping."""
    UP.labels(role).set(0)
