"""Guardrails around an optional LLM intent classifier: what may go in, what may come out. Pure.

Input: a text that tries to steer the model (prompt injection) or asks for something outside a driver's
work is never sent to it. Output: any phone number is masked, and any identifier of another driver or of a
delivery that is not the asking driver's is replaced, so a model cannot leak other people's data.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from connectors.whatsapp.phones import redact_phones
from streams.conversations.intents import fold

MAX_INPUT_CHARS = 500

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
