"""Prometheus metrics of the WhatsApp sender (served on WHATSUP_SENDER_METRICS_PORT); labels stay small."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

SENDS = Counter(
    "whatsup_whatsapp_sends_total",
    "Send attempts by provider, outcome (sent, retried, fallback_template, dead_letter) and error code",
    ["provider", "outcome", "code"],
)
DEAD_LETTERS = Counter("whatsup_whatsapp_dead_letters_total", "Messages dead-lettered, by reason", ["reason"])
DUPLICATES = Counter(
    "whatsup_whatsapp_duplicates_skipped_total",
    "Messages not sent because their key was already claimed, by the claim's state",
    ["state"],
)
AMBIGUOUS = Counter(
    "whatsup_whatsapp_ambiguous_resolved_total",
    "Claims left pending by a crash or a timeout, resolved as confirmed (not resent) or resent",
    ["outcome"],
)
CIRCUIT_STATE = Gauge(
    "whatsup_whatsapp_circuit_state", "Circuit breaker state: 0 closed, 1 half-open, 2 open", ["provider"]
)
RATE_LIMIT_WAITS = Counter(
    "whatsup_whatsapp_rate_limit_waits_total", "Sends that waited for the shared token bucket", ["provider"]
)
RATE_LIMIT_WAIT_SECONDS = Counter(
    "whatsup_whatsapp_rate_limit_wait_seconds_total",
    "Seconds spent waiting for the shared token bucket",
    ["provider"],
)
SEND_LATENCY = Histogram(
    "whatsup_whatsapp_send_duration_seconds",
    "Provider answer time per attempt",
    ["provider"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
