"""The interface an LLM intent classifier plugs into, off by default, always behind the guardrails.

No model ships with the pipeline. A deployment that wants one sets ``WHATSUP_CONVERSATION_LLM_ENABLED`` and
registers an ``IntentClassifier`` (any async callable); the rules still answer first, the model only sees
texts the rules could not classify and the input guardrails let through, and only an intent of the closed
set is accepted back.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from connectors.whatsapp import metrics
from streams.conversations.guardrails import check_input
from streams.conversations.intents import Intent, IntentKind, classify

# (text, language) -> the intent's name, e.g. "orders_today", with an optional order reference.
IntentClassifier = Callable[[str, str], Awaitable[tuple[str, str | None]]]


async def classify_guarded(
    text: str | None, language: str, button_payload: str | None, llm: IntentClassifier | None
) -> Intent:
    """Classify by rules; fall back to ``llm`` (when given) for texts the rules leave unknown."""
    intent = classify(text, button_payload)
    if intent.kind != IntentKind.UNKNOWN or llm is None or not text:
        return intent
    verdict = check_input(text)
    if not verdict.allowed:
        metrics.GUARDRAIL_BLOCKS.labels(verdict.reason).inc()
        return intent
    try:
        name, ref = await llm(text, language)
    except Exception:  # a failing model degrades to the rules' answer, never to a lost message
        metrics.GUARDRAIL_BLOCKS.labels("classifier_error").inc()
        return intent
    try:
        kind = IntentKind(name)
    except ValueError:
        metrics.GUARDRAIL_BLOCKS.labels("unknown_intent").inc()
        return intent
    if kind == IntentKind.LOCATION:  # a location is a share, never something a text claims
        return intent
    return Intent(kind, ref.upper() if ref else None, source="llm")
