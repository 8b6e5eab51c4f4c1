"""Prometheus metrics of the pipeline; labels stay low-cardinality (never a driver id or a phone number)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
