"""A token bucket in Redis shared by every sender replica: one atomic Lua script per send.

The script reserves a token and answers how long the caller must wait for it (0 when one is there):
tokens may go negative, so waiting callers queue in arrival order and the bucket paces them at exactly
``rate`` per second, with one Redis round trip per send. Time comes from Redis (``TIME``), so replicas on
machines with different clocks share one clock.
"""

from __future__ import annotations

import asyncio
from typing import Any

from redis.asyncio import Redis

RESERVE = """
local now = redis.call('TIME')
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 's', 'us')
local tokens = tonumber(state[1])
local elapsed = 0
if tokens == nil then
  tokens = burst
else
  -- seconds and microseconds kept apart: a double printed by tostring keeps only 14 digits
  elapsed = (tonumber(now[1]) - tonumber(state[2])) * 1000000 + (tonumber(now[2]) - tonumber(state[3]))
end
tokens = math.min(burst, tokens + math.max(elapsed, 0) * rate / 1000000) - 1
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 's', now[1], 'us', now[2])
redis.call('PEXPIRE', KEYS[1], 60000 + math.ceil(-math.min(tokens, 0) * 1000 / rate))
if tokens >= 0 then
  return 0
end
return math.ceil(-tokens * 1000000 / rate)
"""


class RedisTokenBucket:
    """Pace sends to ``rate`` per second with bursts of ``burst``, across processes sharing ``key``."""

    def __init__(self, redis: Redis, key: str, rate: float, burst: int) -> None:
        self._redis = redis
        self._key = key
        self._rate = rate
        self._burst = burst
        self._script: Any = redis.register_script(RESERVE)

    async def reserve(self) -> float:
        """Reserve one token; return the seconds to wait before using it."""
        wait_us = await self._script(keys=[self._key], args=[self._rate, self._burst])
        return int(wait_us) / 1_000_000

    async def acquire(self) -> float:
        """Wait for one token; return the seconds waited."""
        wait_s = await self.reserve()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        return wait_s
