"""What the sender works with: a provider route, the retry policy, and the MessageStatus it records."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.whatsapp.breaker import CircuitBreaker
from connectors.whatsapp.catalogue import Catalogue
from connectors.whatsapp.errors import SendError
from connectors.whatsapp.outbound import Outbound
from connectors.whatsapp.ratelimit import RedisTokenBucket

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]  # (STATUS or DEAD, MessageStatus record)
Confirm = Callable[[str, int], Awaitable[dict[str, Any] | None]]  # (message_key, since_ms) -> status
STATUS, DEAD = "status", "dead"


class Client(Protocol):
    provider: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def send(self, message: Outbound, *, as_template: bool) -> str: ...


@dataclass
class Route:
    """One provider: its client, its breaker and its share of the token bucket."""

    client: Client
    breaker: CircuitBreaker
    bucket: RedisTokenBucket
    can_send_template: Callable[[Outbound], bool] = lambda message: True

    @property
    def provider(self) -> str:
        return self.client.provider


@dataclass(frozen=True)
class Policy:
    """How hard to try: attempts, backoff, and how long to wait before resolving a doubtful send."""

    max_attempts: int = 6
    backoff_base_s: float = 0.5
    backoff_max_s: float = 30.0
    confirm_wait_s: float = 30.0
    fallback_template: str | None = "whatsup_update"
    # The one catalogue of approved templates: one it does not name is dead-lettered, not sent.
    catalogue: Catalogue | None = None


def now_ms() -> int:
    """Return the wall clock in epoch milliseconds."""
    return int(time.time() * 1000)


def status_record(
    message_key: str,
    to_hash: str,
    provider: str,
    status: str,
    attempt: int,
    *,
    provider_id: str | None = None,
    error: SendError | None = None,
) -> dict[str, Any]:
    """Return a MessageStatus record."""
    return {
        "message_key": message_key,
        "provider": provider,
        "provider_message_id": provider_id,
        "status": status,
        "error_code": error.code if error else None,
        "error_title": (error.title[:500] if error else None),
        "attempt": attempt,
        "to_hash": to_hash,
        "ts": now_ms(),
    }
