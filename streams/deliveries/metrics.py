"""Prometheus metrics of delivery tracking, alerts and ETAs; labels never name a driver or a delivery."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

DELIVERY_EVENTS = Counter(
    "whatsup_deliveries_events_total",
    "Delivery events judged by the state machine, by outcome (applied, rejected) and reason",
    ["outcome", "reason"],
)
API_REQUESTS = Counter(
    "whatsup_deliveries_api_requests_total",
    "Delivery and dispatcher API requests by route and status",
    ["route", "status"],
)
API_ROUTED = Counter(
    "whatsup_deliveries_api_routed_total",
    "Dispatcher API requests forwarded to the worker owning the key",
    ["route"],
)
ALERTS = Counter(
    "whatsup_alerts_raised_total",
    "Alerts sent to the alerts topic, by kind and what raised them",
    ["kind", "trigger"],
)
TICK_SECONDS = Histogram(
    "whatsup_deliveries_tick_duration_seconds",
    "Time of one pass of the silent-driver timer over the local drivers",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0),
)
ETA_EMITTED = Counter("whatsup_eta_emitted_total", "ETA updates sent to deliveries.eta", ["method"])
ETA_ERROR = Histogram(
    "whatsup_eta_error_seconds",
    "Absolute error of the first and of the last ETA given for a delivery against its actual arrival",
    ["which"],
    buckets=(15, 30, 60, 120, 300, 600, 1200, 1800, 3600),
)
ERASURES = Counter(
    "whatsup_deliveries_erasures_total",
    "LGPD erasure requests the worker applied to its driver states, by outcome (erased, no_state, malformed)",
    ["outcome"],
)
