"""What an intake handler answers, whatever web server carries it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote


@dataclass(frozen=True)
class Reply:
    """An HTTP answer: status, JSON body (or plain text), extra headers, and the reason counted in metrics."""

    status: int
    body: dict[str, Any] | str = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    reason: str = "ok"


def error(status: int, reason: str, message: str, **headers: str) -> Reply:
    """Return a refusal with its reason code and a sentence for the caller."""
    # Header values may echo the request (X-Bad-Field names its field): percent-encoded but for the letters,
    # digits and punctuation of a field path, or a control character in a field's name (a lone surrogate
    # too) makes the server drop the connection unanswered.
    safe = {name: quote(value, safe="[]._-:/ ", errors="surrogatepass") for name, value in headers.items()}
    # The message may quote the request too: a lone surrogate is written as its escape, which any JSON
    # writer takes (the worker's refuses the surrogate itself).
    text = message.encode(errors="backslashreplace").decode()
    return Reply(status, {"error": reason, "message": text}, safe, reason)
