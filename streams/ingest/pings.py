"""``POST /v1/pings``: a driver's phone posts a batch of pings; the answer is 202 once Kafka has them all.

The driver comes from the bearer token only. The answer's ``rejected`` list tells the phone at once which
pings fail the stateless rules; those pings still go to ``gps.pings.raw``, and ``clean_pings`` rejects them
there with the same reason (the rules are deterministic given ``received_ts``, stamped here): one judge
writes every verdict to Kafka, and it sees every ``seq``, which keeps its duplicate blocks whole.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from confluent_kafka import KafkaException

from base import metrics, topics
from base.settings import Settings
from base.tokens import TokenError, VerifiedTokens
from schemas.codecs import codec
from streams.ingest.ratelimit import DriverRateLimiter
from streams.ingest.reply import Reply, error
from streams.pings.intake import BadRequest, parse_batch
from streams.pings.rules import RuleConfig

ROUTE = "/v1/pings"
Send = Callable[[list[tuple[str, str, bytes]]], Awaitable[None]]


class PingIntake:
    """Authenticate, rate-limit, parse and produce one phone's batch of pings."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self.settings = settings
        self.send = send
        self.rules = RuleConfig.from_settings(settings)
        self.topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
        self.rate_limiter = DriverRateLimiter(settings.ingest_rate_per_s, settings.ingest_burst)
        self.encode = codec("GpsPing").encode
        self.tokens = (
            VerifiedTokens((settings.token_secret, *settings.token_secrets_accepted))
            if settings.token_secret
            else None
        )
        self.latency = metrics.HTTP_LATENCY.labels(ROUTE)
        self.received = metrics.PINGS_RECEIVED.labels("edge")

    def authenticate(self, authorization: str) -> str:
        """Return the driver id of the bearer token, or raise TokenError."""
        if self.tokens is None:
            raise TokenError("ingest_disabled", "WHATSUP_TOKEN_SECRET is not set on this process")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise TokenError("missing_token", "send Authorization: Bearer <driver token>")
        return self.tokens.driver_of(token.strip())

    async def handle(self, headers: Mapping[str, str], body: Callable[[], Awaitable[bytes]]) -> Reply:
        """Answer one request; ``body`` reads it (not read at all when the token or the rate refuses)."""
        started = time.perf_counter()
        try:
            return await self._handle(headers, body)
        finally:
            self.latency.observe(time.perf_counter() - started)

    async def _handle(self, headers: Mapping[str, str], body: Callable[[], Awaitable[bytes]]) -> Reply:
        try:
            driver_id = self.authenticate(headers.get("Authorization", ""))
        except TokenError as exc:
            return error(503 if exc.reason == "ingest_disabled" else 401, exc.reason, str(exc))
        wait_s = self.rate_limiter.acquire(driver_id, time.monotonic())
        if wait_s > 0:
            return error(429, "rate_limited", "too many requests", **{"Retry-After": str(int(wait_s) + 1)})
        received_ts = int(time.time() * 1000)
        try:
            intake = parse_batch(
                await body(), driver_id, received_ts, self.rules, self.settings.ingest_max_batch
            )
        except BadRequest as exc:
            return error(exc.status, "bad_request", str(exc), **{"X-Bad-Field": exc.field})
        encode, topic = self.encode, self.topic
        try:
            await self.send([(topic, driver_id, encode(ping)) for ping in intake.pings])
        except (KafkaException, TimeoutError) as exc:
            # Nothing was promised: the phone keeps its batch and retries; ping ids make the retry safe.
            message = f"could not hand the pings to Kafka: {exc!r}"
            return error(503, "unavailable", message, **{"Retry-After": "5"})
        answer: list[dict[str, Any]] = []
        for index, rejection in intake.rejected:
            answer.append({"index": index, "reason": str(rejection.reason), "detail": rejection.detail})
            metrics.PINGS_FLAGGED.labels(str(rejection.reason)).inc()
        self.received.inc(len(intake.pings))
        flagged = {index for index, _ in intake.rejected}
        metrics.observe_event_latency(
            "ingest",
            received_ts / 1000,
            (ping["device_ts"] for index, ping in enumerate(intake.pings) if index not in flagged),
        )
        return Reply(202, {"accepted": len(intake.pings) - len(answer), "rejected": answer})
