"""What the conversation last asked a driver, so that "2" or a button answers it.

The context and its store take their Redis client as a parameter, so this module imports no I/O library;
the conversation agent keeps contexts, and the notify agent sets one when it offers an assignment.

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
CONTEXT_TTL_S = 900


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


class ContextStore:
    """Each driver's chat context in Redis, with a time to live; ``client`` is a ``redis.asyncio.Redis``."""

    def __init__(self, client: Any, namespace: str = "", ttl_s: int = CONTEXT_TTL_S) -> None:
        self.client = client
        self.prefix = f"{namespace}whatsup:chat:"
        self.ttl_s = ttl_s

    async def load(self, driver_ids: list[str]) -> dict[str, ChatContext | None]:
        """Return the context of each driver, in one command (MGET)."""
        if not driver_ids:
            return {}
        raws = await self.client.mget([self.prefix + d for d in driver_ids])
        return {d: ChatContext.loads(raw) for d, raw in zip(driver_ids, raws, strict=True)}

    async def save(self, contexts: dict[str, ChatContext | None]) -> None:
        """Write (or, for None, delete) each driver's context, in one round trip."""
        if not contexts:
            return
        async with self.client.pipeline(transaction=False) as pipe:
            for driver_id, context in contexts.items():
                if context is None:
                    pipe.delete(self.prefix + driver_id)
                else:
                    pipe.set(self.prefix + driver_id, context.dumps(), ex=self.ttl_s)
            await pipe.execute()

    async def forget(self, driver_id: str) -> int:
        """Drop a driver's context (erasure); return the keys deleted."""
        return int(await self.client.delete(self.prefix + driver_id))


class NoContexts:
    """A store that remembers nothing: every number answers no question."""

    async def load(self, driver_ids: list[str]) -> dict[str, ChatContext | None]:
        return dict.fromkeys(driver_ids)

    async def save(self, contexts: dict[str, ChatContext | None]) -> None:
        return None
