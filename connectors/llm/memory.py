"""The model's answers kept in Redis (the same text from the same language gets the same answer without a
call) and the budgets that bound its calls: per driver and for the whole fleet, per UTC day.

A cache key is a hash of the model, the prompt's version, the language and the folded text, so neither
the key nor the value (an intent, an order reference, a short reply) holds the driver's words.
"""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any

from connectors.llm.tools import Answer

# Bump when the prompt or the functions change: answers to the old prompt are not reused.
PROMPT_VERSION = 1


class ResponseCache:
    """Answers by (model, language, text), for ``ttl_s``."""

    def __init__(self, redis: Any, prefix: str, model: str, ttl_s: float) -> None:
        self.redis, self.prefix, self.model, self.ttl_s = redis, prefix, model, max(1, int(ttl_s))

    def key(self, text: str, language: str) -> str:
        folded = " ".join(text.lower().split())
        digest = hashlib.sha256(f"{self.model}\0{PROMPT_VERSION}\0{language}\0{folded}".encode()).hexdigest()
        return f"{self.prefix}whatsup:llm:answer:{digest[:32]}"

    async def get(self, text: str, language: str) -> Answer | None:
        raw = await self.redis.get(self.key(text, language))
        return Answer.from_json(json.loads(raw)) if raw else None

    async def put(self, text: str, language: str, answer: Answer) -> None:
        await self.redis.set(self.key(text, language), json.dumps(answer.as_json()), ex=self.ttl_s)


class Budget:
    """Model calls allowed per driver and for everyone, per UTC day, counted in Redis."""

    def __init__(self, redis: Any, prefix: str, per_driver: int, overall: int) -> None:
        self.redis, self.prefix, self.per_driver, self.overall = redis, prefix, per_driver, overall

    def _key(self, day: str, driver_id: str | None = None) -> str:
        return f"{self.prefix}whatsup:llm:budget:{day}:" + (f"d:{driver_id}" if driver_id else "all")

    async def spend(self, driver_id: str, now_s: float | None = None) -> str | None:
        """Take one call from both budgets; return None when allowed, else which budget is spent
        (``driver_budget`` or ``global_budget``; a refused call is given back)."""
        day = _day(time.time() if now_s is None else now_s)
        mine, everyone = self._key(day, driver_id), self._key(day)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.incr(mine).expire(mine, 2 * 86400).incr(everyone).expire(everyone, 2 * 86400)
            used_mine, _, used_all, _ = await pipe.execute()
        if used_mine <= self.per_driver and used_all <= self.overall:
            return None
        async with self.redis.pipeline(transaction=True) as pipe:
            await pipe.decr(mine).decr(everyone).execute()
        return "driver_budget" if used_mine > self.per_driver else "global_budget"

    async def forget(self, driver_id: str, now_s: float | None = None) -> int:
        """Drop a driver's counters (erasure): every day whose key may still live; return how many went."""
        now = time.time() if now_s is None else now_s
        return int(await self.redis.delete(*(self._key(_day(now - n * 86400), driver_id) for n in range(3))))


def _day(epoch_s: float) -> str:
    return time.strftime("%Y%m%d", time.gmtime(epoch_s))
