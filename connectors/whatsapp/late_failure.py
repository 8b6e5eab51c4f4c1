"""A window found closed after the send: Meta may accept a free-form message and only later report, in a
status callback, that it failed with 131047. That message is sent again as its approved template, once.

The status callback carries only the message key and the recipient's hash, so the sender's claim of the
original key remembers where the original record lies on whatsapp.outbound (no clear number outside that
topic) and whether it went out as free text. The template goes back onto whatsapp.outbound under a key
derived from the original (``<key>:template``): the sender's claims make it one send however often the
failure is reported, and its attempts land on whatsapp.status like any other message's. A failure
reported longer ago than ``max_age_s`` is left alone: the message it was (an ETA, a delay notice) is stale by
then, and a watcher starting on a topic's history must not send it all again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from base.exceptions import SchemaError
from connectors.whatsapp import metrics
from connectors.whatsapp.claims import SENT, Claim, ClaimStore
from schemas.codecs import codec

WINDOW_CLOSED = 131047
TEMPLATE_SUFFIX = ":template"

ReadOriginal = Callable[[str], Awaitable[bytes | None]]  # claim source "topic:partition:offset" -> value
Produce = Callable[[bytes, bytes], Awaitable[None]]  # (key, OutboundMessage value) onto whatsapp.outbound


def fallback_key(message_key: str) -> str:
    """Return the idempotency key of the template sent for ``message_key`` after a late 131047."""
    return message_key + TEMPLATE_SUFFIX


def reports_closed_window(status: Mapping[str, Any]) -> bool:
    """Tell whether a MessageStatus is Meta reporting a free-form message failed for a closed window."""
    return (
        status.get("status") == "failed"
        and status.get("error_code") == WINDOW_CLOSED
        and status.get("provider") == "meta"
        and not str(status.get("message_key", "")).endswith(TEMPLATE_SUFFIX)
    )


def template_record(
    original: Mapping[str, Any], fallback_template: str | None, now_ms: int
) -> dict[str, Any] | None:
    """Return the OutboundMessage that sends ``original`` as its template, or None if it has none."""
    template = original.get("template") or fallback_template
    if not original.get("text") or not template:
        return None
    return {
        **original,
        "message_key": fallback_key(original["message_key"]),
        "text": None,
        "buttons": [],
        "template": template,
        "reason": "window_closed",
        "created_at": now_ms,
    }


class LateWindowFallback:
    """Turn late 131047 failures on whatsapp.status into template messages on whatsapp.outbound."""

    def __init__(
        self,
        claims: ClaimStore,
        read_original: ReadOriginal,
        produce: Produce,
        fallback_template: str | None,
        *,
        claim_wait_s: float = 5.0,
        max_age_s: float = 1800.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.claims, self.read_original, self.produce = claims, read_original, produce
        self.fallback_template, self.claim_wait_s, self._sleep = fallback_template, claim_wait_s, sleep
        self.max_age_ms = int(max_age_s * 1000)
        self._status = codec("MessageStatus").decode
        self._outbound = codec("OutboundMessage")

    async def handle(self, value: bytes, now_ms: int) -> str:
        """Handle one whatsapp.status record; return (and count) what was done with it."""
        outcome = await self._handle(value, now_ms)
        if outcome != "ignored":
            metrics.LATE_WINDOW_FALLBACKS.labels(outcome).inc()
        return outcome

    async def _handle(self, value: bytes, now_ms: int) -> str:
        try:
            status = self._status(value)
        except SchemaError:
            return "ignored"  # not ours to judge: the topic's other readers dead-letter bad bytes
        if not reports_closed_window(status):
            return "ignored"
        if now_ms - int(status["ts"]) > self.max_age_ms:
            return "stale"
        claim = await self._sent_claim(status["message_key"])
        if claim is None:
            return "no_sent_claim"
        if claim.as_template or not claim.source:
            return "not_free_text"
        raw = await self.read_original(claim.source)
        if raw is None:
            return "original_gone"
        try:
            original = self._outbound.decode(raw)
        except SchemaError:
            return "original_unreadable"
        record = template_record(original, self.fallback_template, now_ms)
        if record is None:
            return "no_template"
        await self.produce(record["to_hash"].encode(), self._outbound.encode(record))
        return "template_queued"

    async def _sent_claim(self, message_key: str) -> Claim | None:
        """Return the key's claim once it says sent; the callback can outrun the claim's last write."""
        waited = 0.0
        while True:
            claim = await self.claims.read(message_key)
            if claim is not None and claim.state == SENT:
                return claim
            if claim is None or waited >= self.claim_wait_s:
                return None
            await self._sleep(0.2)
            waited += 0.2
