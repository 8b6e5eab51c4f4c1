"""What the notify agents remember, in Redis: deliveries' customers and what they were told, reply windows.

Redis rather than Faust tables: the ETA, alert and delivery-event agents all need a delivery's customer and
memory, and a recipient's window is written from ``whatsapp.events.raw`` (keyed by phone hash) but read
from driver-keyed topics, so no single table partitioning serves them all.
"""

from __future__ import annotations

import json
from typing import Any

from streams.notify.policy import DAY_MS, CustomerMemory

DELIVERY_TTL_S = 3 * 86_400


class NotifyStore:
    """Delivery memories and reply windows; ``client`` is a ``redis.asyncio.Redis``."""

    def __init__(self, client: Any, namespace: str = "") -> None:
        self.client = client
        self.prefix = f"{namespace}whatsup:notify:"

    async def customer_ref(self, delivery_id: str) -> str | None:
        """Return the customer of a delivery, as its delivery events named them."""
        raw = await self.client.get(f"{self.prefix}customer:{delivery_id}")
        return raw.decode() if isinstance(raw, bytes) else raw

    async def remember_customer(self, delivery_id: str, customer_ref: str) -> None:
        """Remember the customer of a delivery."""
        await self.client.set(f"{self.prefix}customer:{delivery_id}", customer_ref, ex=DELIVERY_TTL_S)

    async def memory(self, delivery_id: str) -> CustomerMemory:
        """Return what the delivery's customer was last told."""
        raw = await self.client.get(f"{self.prefix}told:{delivery_id}")
        return CustomerMemory(**json.loads(raw)) if raw else CustomerMemory()

    async def remember(self, delivery_id: str, memory: CustomerMemory) -> None:
        """Keep what the delivery's customer was told."""
        value = json.dumps(
            {"last_eta": memory.last_eta, "last_sent_at": memory.last_sent_at, "arriving": memory.arriving}
        )
        await self.client.set(f"{self.prefix}told:{delivery_id}", value, ex=DELIVERY_TTL_S)

    async def last_inbound(self, phone_hash: str) -> int | None:
        """Return when the number last wrote to us (within the last day), epoch milliseconds."""
        raw = await self.client.get(f"{self.prefix}inbound:{phone_hash}")
        return int(raw) if raw else None

    async def forget(self, phone_hashes: list[str], customer_refs: list[str]) -> int:
        """Delete the reply windows of a person's numbers and which deliveries were theirs; return the keys
        deleted (a scan of the delivery memories: for erasure, not for traffic)."""
        keys = [f"{self.prefix}inbound:{phone_hash}" for phone_hash in phone_hashes]
        refs = {ref.encode() for ref in customer_refs}
        if refs:
            async for key in self.client.scan_iter(match=f"{self.prefix}customer:*", count=1000):
                if await self.client.get(key) in refs:
                    keys.append(key)
        return int(await self.client.delete(*keys)) if keys else 0

    async def touch_windows(self, latest: dict[str, int]) -> None:
        """Record each number's newest inbound message time; an older, late message never moves it back."""
        if not latest:
            return
        # Compare-and-set in one step per number, every number of the batch in one script call (Redis runs
        # it atomically; one call costs the client far less than a command per number).
        keys = [f"{self.prefix}inbound:{phone_hash}" for phone_hash in latest]
        await self.client.eval(_KEEP_MAX, len(keys), *keys, *latest.values(), DAY_MS)


_KEEP_MAX = """
local ttl = ARGV[#KEYS + 1]
for i, key in ipairs(KEYS) do
  local current = tonumber(redis.call('GET', key) or '0')
  if tonumber(ARGV[i]) > current then
    redis.call('SET', key, ARGV[i], 'PX', ttl)
  end
end
return 0
"""
