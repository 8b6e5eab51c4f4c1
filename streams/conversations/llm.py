"""What a driver's text means: the rules first, then (when it is on) the language model, behind guardrails.

The rules answer every text they classify; the model, off by default, sees only the texts they leave
unknown, and only after the input guardrails (a refused text never reaches it; phone numbers are masked in
what does). Its answer is a call of one of the intents' functions, mapped back onto the same ``Intent`` a
button or a typed word gives, or a short reply of its own, which the output guardrails mask. Answers are
cached in Redis and calls are bounded by a per-driver and a global daily budget. When the model cannot
answer (timeout, errors, a spent budget), ``fail_mode`` decides: ``open`` lets the rules answer (the help
text), ``closed`` refuses the message with "the assistant is unavailable" and guesses nothing.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from connectors.llm.client import LlmError
from connectors.llm.tools import Answer
from connectors.whatsapp import metrics
from connectors.whatsapp.phones import redact_phones
from streams.conversations.guardrails import DEFAULT_GRADES, Hit, check_input, grade, guard_model_reply
from streams.conversations.intents import Intent, IntentKind, classify

log = logging.getLogger(__name__)
# What became of a text the rules left to the model; each starts at zero, so rates and the alert on them have
# a baseline before the first call.
OUTCOMES = ("answered", "cached", "timeout", "rate_limited", "server_error", "refused", "bad_answer",
            "unreachable", "driver_budget", "global_budget")  # fmt: skip
for _outcome in OUTCOMES:
    metrics.LLM_CALLS.labels(_outcome)
for _reason, _grade in DEFAULT_GRADES.items():
    metrics.GUARDRAIL_HITS.labels("output" if _reason == "output_masked" else "input", _reason, _grade)


class Model(Protocol):
    async def interpret(self, text: str, language: str) -> Answer: ...


@dataclass(frozen=True)
class Interpretation:
    """A message's intent; the guardrail hits on the way; the model's own reply (masked) when it gave
    one; what became of the model (``off``, ``rules``, ``answered``, ``cached``, or why it failed)."""

    intent: Intent
    hits: tuple[Hit, ...] = ()
    reply: str | None = None
    model: str = "rules"
    unavailable: bool = False


@dataclass
class Interpreter:
    """The rules, and the model behind its guardrails, cache and budgets (all optional but the rules)."""

    model: Model | None = None
    cache: Any = None  # connectors.llm.memory.ResponseCache, or anything with get and put
    budget: Any = None  # connectors.llm.memory.Budget, or anything with spend
    fail_mode: str = "open"
    grades: dict[str, str] = field(default_factory=dict)

    async def interpret(
        self, text: str | None, language: str, driver_id: str, button_payload: str | None = None
    ) -> Interpretation:
        """Return what a driver's text (or button) means."""
        intent = classify(text, button_payload)
        if intent.kind != IntentKind.UNKNOWN or not text:
            return Interpretation(intent)
        if self.model is None:
            return Interpretation(intent, model="off")
        verdict = check_input(text)
        if not verdict.allowed:
            return Interpretation(intent, (self._hit("input", verdict.reason),), model="guarded")
        asked = redact_phones(text)
        hits = (self._hit("input", "phone_in_input"),) if asked != text else ()
        answer = await self.cache.get(asked, language) if self.cache is not None else None
        outcome = "cached"
        if answer is None:
            spent = await self.budget.spend(driver_id) if self.budget is not None else None
            if spent is not None:
                return self._failed(intent, hits, spent)
            started = time.monotonic()
            try:
                answer = await self.model.interpret(asked, language)
            except LlmError as exc:
                log.info("llm: no answer for driver %s: %s", driver_id, exc)
                return self._failed(intent, hits, exc.reason)
            metrics.LLM_SECONDS.observe(time.monotonic() - started)
            metrics.LLM_TOKENS.inc(answer.tokens)
            outcome = "answered"
            if self.cache is not None:
                await self.cache.put(asked, language, answer)
        metrics.LLM_CALLS.labels(outcome).inc()
        return self._understood(intent, hits, answer, asked, outcome)

    def _understood(
        self, intent: Intent, hits: tuple[Hit, ...], answer: Answer, asked: str, outcome: str
    ) -> Interpretation:
        if answer.function is None:
            reply = answer.reply or ""
            masked = guard_model_reply(reply, asked)
            if masked != reply:
                hits += (self._hit("output", "output_masked"),)
            return Interpretation(intent, hits, reply=masked, model=outcome)
        try:
            kind = IntentKind(answer.function)
        except ValueError:  # the client checks names against the tools; a cached entry may predate one
            return Interpretation(intent, hits, model="bad_answer")
        understood = Intent(
            kind,
            answer.order_ref.upper() if answer.order_ref else None,
            source="llm",
            failure_reason=answer.reason,
        )
        return Interpretation(understood, hits, model=outcome)

    def _failed(self, intent: Intent, hits: tuple[Hit, ...], reason: str) -> Interpretation:
        metrics.LLM_CALLS.labels(reason).inc()
        return Interpretation(intent, hits, model=reason, unavailable=self.fail_mode == "closed")

    def _hit(self, stage: str, reason: str) -> Hit:
        hit = grade(stage, reason, self.grades)
        metrics.GUARDRAIL_HITS.labels(hit.stage, hit.reason, hit.grade).inc()
        return hit
