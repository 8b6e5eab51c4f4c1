"""Prometheus metrics of the WhatsApp inbound path, the conversation agent and the notify agent.

Labels stay low-cardinality: provider, outcome, reason, type, intent, language; never a phone, driver id or
message key.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
GUARDRAIL_BLOCKS = Counter(
    "whatsup_whatsapp_guardrail_blocks_total",
    "Texts the LLM guardrails kept from the classifier, by reason",
    ["reason"],
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
