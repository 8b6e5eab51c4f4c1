"""Guardrails around the language model: what may go in, what may come out, and how bad a hit is. Pure.

Input: a text that tries to steer the model (prompt injection) or asks for something outside a driver's
work is never sent to it, and phone numbers are masked before it is. Output: any phone number is masked, and
any identifier of another driver or of a delivery that is not the asking driver's is replaced, so a model
cannot leak other people's data.

Every hit is graded on a ladder: ``log`` (recorded, nothing else), ``warn`` (recorded, the driver is told
the assistant only helps with deliveries), ``block`` (recorded, the message is refused and dispatch gets a
``guardrail`` alert). ``DEFAULT_GRADES`` says which reason gets which; WHATSUP_GUARDRAIL_GRADES overrides.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.whatsapp.phones import redact_phones
from streams.conversations.intents import fold

MAX_INPUT_CHARS = 500
GRADES = ("log", "warn", "block")
DEFAULT_GRADES = {
    "prompt_injection": "block",
    "out_of_scope": "warn",
    "too_long": "warn",
    "phone_in_input": "log",
    "output_masked": "log",
}
# Delivery and driver identifiers as they are written (D-1001, d-12, ORD-77).
_IDENTIFIER = re.compile(r"\b[A-Za-z]{1,4}-\d{1,10}\b")

_INJECTION = re.compile(
    r"\b(?:ignore|disregard|forget|esqueca|ignora|ignore as|olvida)\b.{0,40}"
    r"\b(?:instructions?|instrucoes|instrucciones|rules|regras|reglas|prompt|above|anteriores|previous)\b"
    r"|\b(?:system prompt|you are now|act as|pretend to be|jailbreak|developer mode|modo desenvolvedor)\b"
    r"|\b(?:voce agora e|finja ser|ahora eres|actua como|haz de cuenta)\b"
    r"|<\s*/?\s*(?:system|assistant|instructions?)\s*>|\[\s*(?:system|inst)\s*\]"
)
_OUT_OF_SCOPE = re.compile(
    r"\b(?:password|senha|contrasena|api key|token|credit card|cartao|tarjeta|cpf|salary|salario"
    r"|other drivers?|outros? (?:motoboys?|entregadores?)|otros? repartidores?|phone number of|telefone d[eo]"
    r"|numero d[eo]|address of|endereco d[eo]|direccion de|all drivers|todos os entregadores"
    r"|write (?:me )?(?:a|an) (?:poem|essay|story|code)|escreva um poema|escribe un poema)\b"
)


@dataclass(frozen=True)
class InputVerdict:
    """Whether a text may be shown to the classifier, and if not, why (a reason code)."""

    allowed: bool
    reason: str = "ok"


def check_input(text: str) -> InputVerdict:
    """Refuse prompt-injection attempts, out-of-scope requests and oversized texts."""
    if len(text) > MAX_INPUT_CHARS:
        return InputVerdict(False, "too_long")
    folded = fold(text).replace("-", " ")
    spaced = re.sub(r"\s+", " ", text.lower())
    if _INJECTION.search(folded) or _INJECTION.search(spaced):
        return InputVerdict(False, "prompt_injection")
    if _OUT_OF_SCOPE.search(folded):
        return InputVerdict(False, "out_of_scope")
    return InputVerdict(True)


def guard_output(text: str, own_ids: Iterable[str], known_ids: Iterable[str]) -> str:
    """Mask phone numbers and every known identifier (driver or delivery) that is not the asker's own."""
    allowed = set(own_ids)
    masked = redact_phones(text)
    for identifier in sorted(set(known_ids) - allowed, key=len, reverse=True):
        if identifier:
            masked = re.sub(re.escape(identifier), "[hidden]", masked, flags=re.IGNORECASE)
    return masked


@dataclass(frozen=True)
class Hit:
    """One guardrail hit: where (``input`` or ``output``), why (a reason code), and its grade."""

    stage: str
    reason: str
    grade: str


def grade(stage: str, reason: str, overrides: dict[str, str] | None = None) -> Hit:
    """Grade a hit: the override for ``reason``, else its default, else ``warn``."""
    chosen = (overrides or {}).get(reason) or DEFAULT_GRADES.get(reason, "warn")
    return Hit(stage, reason, chosen if chosen in GRADES else "warn")


def worst(hits: Iterable[Hit]) -> str | None:
    """Return the highest grade among ``hits`` (None when there are none)."""
    ranks = [GRADES.index(h.grade) for h in hits]
    return GRADES[max(ranks)] if ranks else None


def guard_model_reply(reply: str, asked: str) -> str:
    """Mask phones, and every identifier in a model's reply that the driver's own message did not name:
    the model is shown nothing of the fleet, so any other id in its answer is made up or leaked."""
    own = {found.upper() for found in _IDENTIFIER.findall(asked)}
    return guard_output(reply, own, [found.upper() for found in _IDENTIFIER.findall(reply)])
