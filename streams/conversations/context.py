"""What the conversation last asked a driver, so that "2" or a button answers it. Pure: no I/O.

A reply that shows a numbered list or buttons keeps its options as button payloads (``det:D-1``,
``acc:D-1``, ``do:delivered:D-1``, ``fail:not_home:D-1``); a bare number then stands for the payload at that
position, and goes through the same intents as a pressed button. After a driver says they arrived, the
context remembers the door they are at, so a photo or a shared location that follows is the proof of that
delivery. The store keeps one context per driver, with a time to live: a stale "2" is refused, not guessed.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("options", "at_door")


@dataclass(frozen=True)
class ChatContext:
    """The last question put to a driver: its options (button payloads), or the delivery they are at."""

    kind: str
    options: tuple[str, ...] = ()
    delivery_id: str | None = None
    # A proof (media or location reference) waiting for the driver to say which delivery it belongs to.
    proof_ref: str | None = None
    # The message that set it: its time, so a replayed batch sees the context as it was then, at worst later.
    set_at: int = 0

    def option(self, number: int) -> str | None:
        """Return the payload of 1-based option ``number``, or None when there is no such option."""
        return (
            self.options[number - 1] if self.kind == "options" and 1 <= number <= len(self.options) else None
        )

    def dumps(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def loads(cls, raw: bytes | str | None) -> ChatContext | None:
        """Return the context a store value holds; None for nothing, or for a value of no known shape."""
        if not raw:
            return None
        try:
            data: Any = json.loads(raw)
            context = cls(**{**data, "options": tuple(data.get("options") or ())})
        except (ValueError, TypeError):
            return None
        return context if context.kind in KINDS else None


def options(*payloads: str, proof_ref: str | None = None, at: int = 0) -> ChatContext:
    """Return a context offering ``payloads`` as options 1, 2, ..."""
    return ChatContext("options", tuple(payloads), proof_ref=proof_ref, set_at=at)


def at_door(delivery_id: str, at: int = 0) -> ChatContext:
    """Return the context of a driver standing at the door of ``delivery_id``."""
    return ChatContext("at_door", delivery_id=delivery_id, set_at=at)
