"""Send one OutboundMessage exactly once: claim, pace, choose a provider, classify, retry, record.

Every attempt becomes a MessageStatus on whatsapp.status: ``sent`` on success, ``queued`` with the error
code when it will be retried (or re-sent as the template), ``failed`` when it is given up; a given-up
message also goes to the dead-letter topic with its code. Kafka and Redis failures are not caught: the
process stops, and the claims make the replay of uncommitted records safe.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable

from aiokafka.errors import KafkaError
from redis.exceptions import RedisError

from base.exceptions import SchemaError
from connectors.whatsapp import metrics
from connectors.whatsapp.breaker import STATE_VALUE, backoff_delay
from connectors.whatsapp.claims import FAILED, PENDING, SENT, Claim, ClaimStore
from connectors.whatsapp.errors import (
    PermanentSendError,
    RateLimited,
    SendError,
    TransientSendError,
    WindowClosed,
)
from connectors.whatsapp.outbound import Outbound
from connectors.whatsapp.route import DEAD, STATUS, Confirm, Emit, Policy, Route, now_ms, status_record
from schemas.codecs import codec

log = logging.getLogger(__name__)
INFRASTRUCTURE = (RedisError, KafkaError, OSError, asyncio.CancelledError)


class Sender:
    """The send logic of ``whatsup sender``, with its I/O passed in."""

    def __init__(
        self,
        *,
        meta: Route,
        twilio: Route | None,
        claims: ClaimStore,
        emit: Emit,
        confirm: Confirm,
        policy: Policy,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.meta, self.twilio = meta, twilio
        self.claims, self.emit, self.confirm, self.policy = claims, emit, confirm, policy
        self._sleep, self._rand = sleep, rand
        self._decode = codec("OutboundMessage").decode

    async def handle(self, value: bytes, key: bytes | None, where: str) -> None:
        """Process one whatsapp.outbound record (``where`` names it for dead letters of bad bytes)."""
        try:
            message = Outbound.from_record(self._decode(value), self.policy.fallback_template)
        except (SchemaError, KeyError) as exc:
            to_hash = key.decode(errors="replace") if key else ""
            error = PermanentSendError(str(exc)[:300], title="undecodable")
            await self._dead_letter(f"undecodable:{where}", to_hash, "meta", 0, error)
            return
        existing = await self.claims.claim(message.message_key)
        if existing is not None and not await self._resolve(message, existing):
            return
        try:
            await self._send(message, where)
        except INFRASTRUCTURE:
            raise  # Redis or Kafka is down: stop; the claims make the replay safe
        except Exception as exc:
            # A defect met by one record must not stop the stream: dead-letter it and go on. Its claim
            # stays pending, so a replay waits for proof of a send before trying again.
            log.exception("unexpected error sending %s", message.message_key)
            error = PermanentSendError(f"{type(exc).__name__}: {exc}"[:300], title="internal_error")
            await self._dead_letter(message.message_key, message.to_hash, "meta", 0, error)

    async def _resolve(self, message: Outbound, claim: Claim) -> bool:
        """Decide about a key claimed before: False to skip it, True once we own it and must send."""
        while True:
            if claim.state in (SENT, FAILED) or claim.owner == self.claims.owner:
                metrics.DUPLICATES.labels(claim.state if claim.state != PENDING else "in_flight").inc()
                if claim.state == SENT:
                    await self._restate(message, claim)
                return False
            wait_s = (claim.at_ms - now_ms()) / 1000 + self.policy.confirm_wait_s
            if await self._confirmed(message, claim.at_ms, wait_s):
                return False
            if await self.claims.take_over(message.message_key, claim):
                metrics.AMBIGUOUS.labels("resent").inc()
                log.warning("resending %s: its earlier send was never confirmed", message.message_key)
                return True
            latest = await self.claims.claim(message.message_key)
            if latest is None:
                return True
            claim = latest

    async def _restate(self, message: Outbound, claim: Claim) -> None:
        """Emit a sent claim's status again: a replayed record's status may have died with the process."""
        # The status order makes a repeated "sent" harmless downstream.
        provider, attempt = claim.provider or "meta", claim.attempt or 1
        record = status_record(
            message.message_key, message.to_hash, provider, "sent", attempt, provider_id=claim.provider_id
        )
        await self.emit(STATUS, record)

    async def _confirmed(
        self, message: Outbound, since_ms: int, wait_s: float, *, ours: bool = False
    ) -> bool:
        """Wait ``wait_s`` for callbacks to land, then look for proof the key was sent; record it if so."""
        if ours:  # keep our claim alive meanwhile
            await self._hold(wait_s, message.message_key)
        elif wait_s > 0:
            await self._sleep(wait_s)
        found = await self.confirm(message.message_key, since_ms)
        if found is None:
            return False
        metrics.AMBIGUOUS.labels("confirmed").inc()
        await self.claims.finish(
            message.message_key, SENT, provider=found["provider"], provider_id=found["provider_message_id"]
        )
        return True

    def _route(self, message: Outbound, as_template: bool) -> Route | None:
        for route in (self.meta, self.twilio):
            usable = route is not None and (not as_template or route.can_send_template(message))
            if route is not None and usable and route.breaker.allow():
                metrics.CIRCUIT_STATE.labels(route.provider).set(STATE_VALUE[route.breaker.state])
                return route
        return None

    async def _wait_for_route(self) -> None:
        routes = [r for r in (self.meta, self.twilio) if r is not None]
        for route in routes:
            metrics.CIRCUIT_STATE.labels(route.provider).set(STATE_VALUE[route.breaker.state])
        await self._hold(min(r.breaker.retry_in() for r in routes) or 0.05)

    async def _hold(self, seconds: float, message_key: str | None = None) -> None:
        """Sleep, refreshing our pending claim so that nobody takes over a send that is alive."""
        step = max(0.05, self.policy.confirm_wait_s / 3)
        while seconds > 0:
            if message_key is not None:
                await self.claims.heartbeat(message_key)
            await self._sleep(min(step, seconds))
            seconds -= step

    async def _send(self, message: Outbound, where: str) -> None:
        key, to_hash = message.message_key, message.to_hash
        try:
            message.check()
        except PermanentSendError as exc:
            await self._give_up(message, "meta", 0, exc)
            return
        as_template = message.starts_as_template()
        attempt = failures = 0
        while True:
            unapproved = self._unapproved(message) if as_template else None
            if unapproved is not None:
                await self._give_up(message, "meta", attempt, unapproved)
                return
            route = self._route(message, as_template)
            if route is None:
                await self._wait_for_route()
                continue
            attempt += 1
            if attempt > 1:  # the claim was written just before the first attempt
                await self.claims.heartbeat(key)
            waited = await route.bucket.acquire()
            if waited > 0:
                metrics.RATE_LIMIT_WAITS.labels(route.provider).inc()
                metrics.RATE_LIMIT_WAIT_SECONDS.labels(route.provider).inc(waited)
            started, attempt_ms = time.perf_counter(), now_ms()
            try:
                provider_id = await route.client.send(message, as_template=as_template)
            except WindowClosed as exc:
                route.breaker.record_success()
                if not message.can_fall_back(as_template):
                    await self._give_up(message, route.provider, attempt, exc)
                    return
                as_template = True
                metrics.SENDS.labels(route.provider, "fallback_template", exc.label).inc()
                await self.emit(
                    STATUS, status_record(key, to_hash, route.provider, "queued", attempt, error=exc)
                )
                continue
            except SendError as exc:
                if isinstance(exc, TransientSendError):
                    route.breaker.record_failure()
                elif not isinstance(exc, RateLimited):
                    route.breaker.record_success()  # a definite answer: the provider is up
                metrics.CIRCUIT_STATE.labels(route.provider).set(STATE_VALUE[route.breaker.state])
                failures += not isinstance(exc, RateLimited)
                if (
                    not exc.retriable
                    or failures >= self.policy.max_attempts
                    or attempt >= 4 * self.policy.max_attempts
                ):
                    await self._give_up(message, route.provider, attempt, exc)
                    return
                metrics.SENDS.labels(route.provider, "retried", exc.label).inc()
                await self.emit(
                    STATUS, status_record(key, to_hash, route.provider, "queued", attempt, error=exc)
                )
                wait_s = self.policy.confirm_wait_s
                if exc.maybe_sent and await self._confirmed(message, attempt_ms, wait_s, ours=True):
                    return
                delay = backoff_delay(
                    attempt, self.policy.backoff_base_s, self.policy.backoff_max_s, self._rand
                )
                await self._hold(max(delay, exc.retry_after_s or 0.0), key)
                continue
            finally:
                metrics.SEND_LATENCY.labels(route.provider).observe(time.perf_counter() - started)
            route.breaker.record_success()
            metrics.CIRCUIT_STATE.labels(route.provider).set(STATE_VALUE[route.breaker.state])
            metrics.SENDS.labels(route.provider, "sent", "").inc()
            # The claim says sent first: it is the one fast write between the provider's answer and safety
            # from a resend. The status follows; a replay after a crash in between states it again.
            # Where the record lies and how it went out: a late 131047 re-sends it as the template from there.
            await self.claims.finish(
                key, SENT, provider=route.provider, provider_id=provider_id, attempt=attempt,
                source=where, as_template=as_template,
            )  # fmt: skip
            record = status_record(key, to_hash, route.provider, "sent", attempt, provider_id=provider_id)
            await self.emit(STATUS, record)
            return

    def _unapproved(self, message: Outbound) -> PermanentSendError | None:
        """Return the error of a template the catalogue does not approve (name, language, params)."""
        catalogue = self.policy.catalogue
        if catalogue is None or message.template is None:
            return None
        problem = catalogue.template_problem(message.template, message.language, len(message.params))
        if problem is None:
            return None
        detail = f"template {message.template!r} ({message.language}): {problem}"
        return PermanentSendError(detail, title=problem)

    async def _give_up(self, message: Outbound, provider: str, attempt: int, error: SendError) -> None:
        await self._dead_letter(message.message_key, message.to_hash, provider, attempt, error)
        await self.claims.finish(message.message_key, FAILED, provider=provider, code=error.code)

    async def _dead_letter(
        self, key: str, to_hash: str, provider: str, attempt: int, error: SendError
    ) -> None:
        metrics.SENDS.labels(provider, "dead_letter", error.label).inc()
        # Provider codes, or our own short reason codes; never free text (label cardinality).
        reason = (
            error.label if error.code or error.http_status or not error.title.isidentifier() else error.title
        )
        metrics.DEAD_LETTERS.labels(reason).inc()
        record = status_record(key, to_hash, provider, "failed", max(attempt, 1), error=error)
        await self.emit(STATUS, record)
        await self.emit(DEAD, record)
