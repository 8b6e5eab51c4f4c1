"""Webhook deduplication: Meta retries for days, so each message id is claimed once in Redis (SET NX)."""

from __future__ import annotations

from typing import Any

SEEN_TTL_S = 7 * 86_400


class WebhookDeduper:
    """Claims of provider message ids, kept a week."""

    def __init__(self, client: Any, namespace: str = "", ttl_s: int = SEEN_TTL_S) -> None:
        self.client = client
        self.prefix = f"{namespace}whatsup:webhook:seen:"
        self.ttl_s = ttl_s

    def queue_claims(self, pipe: Any, ids: list[str]) -> None:
        """Add the claims of ``ids`` to a Redis pipeline (one reply per id: truthy when first seen)."""
        for item in ids:
            pipe.set(self.prefix + item, b"1", ex=self.ttl_s, nx=True)

    async def claim(self, ids: list[str]) -> list[bool]:
        """Claim every id in one round trip; True where this call is the first to see it."""
        if not ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        self.queue_claims(pipe, ids)
        return [bool(ok) for ok in await pipe.execute()]

    async def release(self, ids: list[str]) -> None:
        """Forget claims whose records never reached Kafka, so the provider's retry is taken."""
        if ids:
            await self.client.delete(*(self.prefix + item for item in ids))
