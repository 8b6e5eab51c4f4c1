"""Prometheus metrics of the dispatcher console; labels never name a driver, a dispatcher or an incident."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUESTS = Counter(
    "whatsup_console_requests_total", "Console API answers by route and status", ["route", "status"]
)
ANSWER_SECONDS = Histogram(
    "whatsup_console_answer_seconds",
    "Time to answer a console API request, the audit record included",
    ["route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.3, 1.0, 3.0),
)
SIGN_INS = Counter("whatsup_console_sign_ins_total", "Sign-in attempts by outcome", ["outcome"])
DRIVERS = Gauge("whatsup_console_drivers", "Drivers the console holds, by status", ["status"])
INCIDENTS_OPEN = Gauge("whatsup_console_incidents_open", "Incidents not resolved in the console's window")
SKIPPED = Counter(
    "whatsup_console_records_skipped_total",
    "Alerts and dispatchers' actions the console could not read, by topic and reason",
    ["topic", "reason"],
)
STREAMS = Gauge("whatsup_console_streams", "Pages connected to the push channel")
