"""Prometheus metrics of the WhatsApp side: the sender (served on WHATSUP_SENDER_METRICS_PORT), the inbound
webhooks, the conversation agent and the notify agent (served by the worker).

Labels stay low-cardinality: provider, outcome, code, reason, type, intent, language; never a phone, driver id
or message key.
"""

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
LATE_WINDOW_FALLBACKS = Counter(
    "whatsup_whatsapp_late_window_fallbacks_total",
    "Late 131047 failures reported by status callbacks, by outcome (template_queued, no_sent_claim, ...)",
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

WEBHOOK_REQUESTS = Counter(
    "whatsup_whatsapp_webhook_requests_total",
    "Webhook requests by provider, HTTP status and reason (ok, bad_signature, ...)",
    ["provider", "status", "reason"],
)
WEBHOOK_LATENCY = Histogram(
    "whatsup_whatsapp_webhook_duration_seconds",
    "Time to verify, normalize, deduplicate and hand a webhook to Kafka",
    ["provider"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
WEBHOOK_EVENTS = Counter(
    "whatsup_whatsapp_webhook_events_total",
    "Normalized events put on whatsapp.events.raw, by provider and type",
    ["provider", "type"],
)
WEBHOOK_DUPLICATES = Counter(
    "whatsup_whatsapp_webhook_duplicates_total",
    "Webhook events dropped because their id was already seen (provider retries)",
    ["provider"],
)
WEBHOOK_UNSUPPORTED = Counter(
    "whatsup_whatsapp_webhook_unsupported_total",
    "Inbound messages of a type the pipeline does not act on, by original type",
    ["provider", "original_type"],
)
WEBHOOK_SKIPPED = Counter(
    "whatsup_whatsapp_webhook_skipped_total",
    "Parts of a signed webhook that could not be normalized, by reason",
    ["provider", "reason"],
)
REFUSALS = Counter(
    "whatsup_whatsapp_refusals_total",
    "Messages from numbers that are not active drivers, by reason and whether a refusal was sent",
    ["reason", "answered"],
)
CONVERSATION_EVENTS = Counter(
    "whatsup_whatsapp_conversation_events_total",
    "Inbound events the conversation agent handled, by intent and language",
    ["intent", "language"],
)
CONVERSATION_ERRORS = Counter(
    "whatsup_whatsapp_conversation_errors_total",
    "Inbound events the conversation agent could not handle, by reason",
    ["reason"],
)
OPT_CHANGES = Counter(
    "whatsup_whatsapp_opt_changes_total",
    "Numbers that wrote STOP (out) or START (in) to customer messages",
    ["choice"],
)
CONVERSATION_REFUSALS = Counter(
    "whatsup_whatsapp_conversation_refusals_total",
    "Driver messages answered with a refusal that changed nothing (stale context, unknown button, a step"
    " the delivery cannot take), by reason",
    ["reason"],
)
GUARDRAIL_HITS = Counter(
    "whatsup_whatsapp_guardrail_hits_total",
    "Guardrail hits around the language model, by stage (input, output), reason and grade (log, warn, block)",
    ["stage", "reason", "grade"],
)
LLM_CALLS = Counter(
    "whatsup_llm_calls_total",
    "Texts the rules left to the language model, by outcome: answered, cached, a failure's reason (timeout,"
    " rate_limited, server_error, refused, bad_answer, unreachable) or a spent budget",
    ["outcome"],
)
LLM_SECONDS = Histogram(
    "whatsup_llm_call_seconds",
    "Time the language model took to answer one message, retries included",
    buckets=(0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0),
)
LLM_TOKENS = Counter(
    "whatsup_llm_tokens_total", "Tokens the language model's answers cost, as it reported them"
)
NOTIFY_MESSAGES = Counter(
    "whatsup_whatsapp_notify_messages_total",
    "Outbound messages the notify agent produced, by reason and mode (text or template)",
    ["reason", "mode"],
)
NOTIFY_SUPPRESSED = Counter(
    "whatsup_whatsapp_notify_suppressed_total",
    "Notifications the policy held back, by reason",
    ["reason"],
)
