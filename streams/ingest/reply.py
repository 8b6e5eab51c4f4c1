"""What an intake handler answers, whatever web server carries it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (or plain text), extra headers, and the reason counted in metrics."""

    status: int
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "ok"


def error(status: int, reason: str, message: str, **headers: str) -> Reply:
    """Return a refusal with its reason code and a sentence for the caller."""
    return Reply(status, {"error": reason, "message": message}, headers, reason)
