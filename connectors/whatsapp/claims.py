"""Idempotency claims in Redis: one send per message key, across restarts and replicas.

A claim moves ``pending`` -> ``sent`` or ``failed``, never back. ``pending`` is written (SET NX) before
the HTTP call and carries its owner and a heartbeat; ``sent`` is written as soon as the provider answers.
A ``pending`` claim whose owner is gone is the one ambiguous case (the process died between the provider's
answer and recording it): the sender resolves it from whatsapp.status, where the webhook writes the
provider's status callbacks, before sending again.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

PENDING, SENT, FAILED = "pending", "sent", "failed"

# Replace the claim only if it still holds exactly what the caller saw (compare-and-set).
SWAP = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


@dataclass(frozen=True)
class Claim:
    """A claim's content; ``raw`` is what Redis holds, for compare-and-set."""

    state: str
    owner: str = ""
    at_ms: int = 0
    provider: str | None = None
    provider_id: str | None = None
    code: int | None = None
    attempt: int | None = None
    # Where the message's record lies ("topic:partition:offset") and whether it went out as a template.
    source: str | None = None
    as_template: bool = False
    raw: str = ""

    @classmethod
    def parse(cls, raw: str) -> Claim:
        data: dict[str, Any] = json.loads(raw)
        return cls(
            state=data["state"],
            owner=data.get("owner", ""),
            at_ms=int(data.get("at", 0)),
            provider=data.get("provider"),
            provider_id=data.get("id"),
            code=data.get("code"),
            attempt=data.get("attempt"),
            source=data.get("src"),
            as_template=bool(data.get("tpl", False)),
            raw=raw,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


class ClaimStore:
    """Claims of one deployment, under ``prefix`` in Redis, kept ``ttl_s`` seconds."""

    def __init__(self, redis: Redis, prefix: str, owner: str, ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self.owner = owner
        self._ttl_ms = int(ttl_s * 1000)
        self._swap: Any = redis.register_script(SWAP)

    def key(self, message_key: str) -> str:
        return f"{self._prefix}{message_key}"

    def _pending(self) -> str:
        return json.dumps({"state": PENDING, "owner": self.owner, "at": _now_ms()})

    async def claim(self, message_key: str) -> Claim | None:
        """Claim ``message_key`` for this owner; return None when claimed, else the claim already there."""
        key = self.key(message_key)
        if await self._redis.set(key, self._pending(), nx=True, px=self._ttl_ms):
            return None
        raw = await self._redis.get(key)
        if raw is None:  # expired between the two calls: try once more
            return await self.claim(message_key)
        return Claim.parse(raw.decode() if isinstance(raw, bytes) else raw)

    async def read(self, message_key: str) -> Claim | None:
        """Return the claim of ``message_key``, or None when there is none."""
        raw = await self._redis.get(self.key(message_key))
        if raw is None:
            return None
        return Claim.parse(raw.decode() if isinstance(raw, bytes) else raw)

    async def take_over(self, message_key: str, seen: Claim) -> bool:
        """Make a pending claim ours if it still is exactly ``seen``; tell whether it worked."""
        swapped = await self._swap(
            keys=[self.key(message_key)], args=[seen.raw, self._pending(), self._ttl_ms]
        )
        return bool(swapped)

    async def heartbeat(self, message_key: str) -> None:
        """Refresh our pending claim's time before an attempt, so no one takes over a live send."""
        await self._redis.set(self.key(message_key), self._pending(), xx=True, px=self._ttl_ms)

    async def finish(
        self,
        message_key: str,
        state: str,
        *,
        provider: str | None = None,
        provider_id: str | None = None,
        code: int | None = None,
        attempt: int | None = None,
        source: str | None = None,
        as_template: bool = False,
    ) -> None:
        """Record the final outcome (``sent`` or ``failed``) of a claimed key and what was sent from where."""
        value = {
            "state": state,
            "provider": provider,
            "id": provider_id,
            "code": code,
            "attempt": attempt,
            "src": source,
            "tpl": as_template,
            "at": _now_ms(),
        }
        await self._redis.set(self.key(message_key), json.dumps(value), px=self._ttl_ms)
