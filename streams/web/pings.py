"""``POST /v1/pings``: a driver's phone posts a batch of pings; we answer 202 once Kafka has them.

The view produces with its own idempotent aiokafka producer (acks=all), outside the agents' transactions:
ingestion must not wait for, or be rolled back with, any stream processing. A 202 means every ping of the
batch is durably on ``gps.pings.raw``.

The answer's ``rejected`` list tells the phone at once which pings fail the stateless rules. Those pings go
to ``gps.pings.raw`` too, and ``clean_pings`` rejects them there with the same reason (the rules are
deterministic given ``received_ts``, stamped here): one judge writes every verdict to Kafka, and it sees
every ``seq``, which keeps its duplicate ranges contiguous.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faust.web import Request, Response, View
from mode import Service

from schemas.codecs import codec
from streams import metrics, topics
from streams.app import app, settings
from streams.pings.agents import RULES
from streams.pings.intake import BadRequest, parse_batch
from streams.web.ratelimit import DriverRateLimiter
from streams.web.tokens import TokenError, verify_driver_token

ROUTE = "/v1/pings"
RAW_TOPIC = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)


class IngestProducer:
    """The ingest API's Kafka producer: started on first use or with the worker, stopped with it."""

    def __init__(self) -> None:
        self.producer: AIOKafkaProducer | None = None
        self._lock = asyncio.Lock()

    async def start(self) -> AIOKafkaProducer:
        async with self._lock:
            if self.producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=settings.kafka_bootstrap.split(","),
                    acks="all",
                    enable_idempotence=True,
                    linger_ms=2,
                    compression_type="lz4",
                )
                await producer.start()
                self.producer = producer
            return self.producer

    async def stop(self) -> None:
        async with self._lock:
            if self.producer is not None:
                await self.producer.stop()
                self.producer = None

    async def send_all(self, records: list[tuple[str, str, bytes]]) -> None:
        """Send (topic, key, value) records and wait until the broker has acknowledged all of them."""
        producer = self.producer or await self.start()
        futures = [await producer.send(t, key=k.encode(), value=v) for t, k, v in records]
        await asyncio.gather(*futures)


ingest_producer = IngestProducer()


@app.service
class IngestProducerService(Service):
    """Tie the ingest producer's life to the worker's."""

    async def on_start(self) -> None:
        await ingest_producer.start()

    async def on_stop(self) -> None:
        await ingest_producer.stop()


rate_limiter = DriverRateLimiter(settings.ingest_rate_per_s, settings.ingest_burst)
_gps_ping = codec("GpsPing")


def _error(view: View, status: int, reason: str, message: str, **headers: str) -> Response:
    metrics.HTTP_REQUESTS.labels(ROUTE, str(status)).inc()
    return view.json({"error": reason, "message": message}, status=status, headers=headers or None)


def authenticate(request: Request) -> str:
    """Return the driver id of the request's bearer token, or raise TokenError."""
    if settings.token_secret is None:
        raise TokenError("ingest_disabled", "WHATSUP_TOKEN_SECRET is not set on this worker")
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise TokenError("missing_token", "send Authorization: Bearer <driver token>")
    return verify_driver_token(settings.token_secret, token.strip())


@app.page(ROUTE)
class PingsView(View):
    """Accept a batch of a driver's pings."""

    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        try:
            return await self._post(request)
        finally:
            metrics.HTTP_LATENCY.labels(ROUTE).observe(time.perf_counter() - started)

    async def _post(self, request: Request) -> Response:
        try:
            driver_id = authenticate(request)
        except TokenError as exc:
            status = 503 if exc.reason == "ingest_disabled" else 401
            return _error(self, status, exc.reason, str(exc))
        wait_s = rate_limiter.acquire(driver_id, time.monotonic())
        if wait_s > 0:
            return _error(
                self, 429, "rate_limited", "too many requests", **{"Retry-After": str(int(wait_s) + 1)}
            )
        received_ts = int(time.time() * 1000)
        try:
            intake = parse_batch(
                await request.read(), driver_id, received_ts, RULES, settings.ingest_max_batch
            )
        except BadRequest as exc:
            return _error(self, exc.status, "bad_request", str(exc), **{"X-Bad-Field": exc.field})
        records = [(RAW_TOPIC, driver_id, _gps_ping.encode(ping)) for ping in intake.pings]
        answer: list[dict[str, Any]] = []
        for index, rejection in intake.rejected:
            answer.append({"index": index, "reason": str(rejection.reason), "detail": rejection.detail})
            metrics.PINGS_FLAGGED.labels(str(rejection.reason)).inc()
        try:
            await ingest_producer.send_all(records)
        except KafkaError as exc:
            # Nothing was promised: the phone keeps its batch and retries; ping ids make the retry safe.
            return _error(
                self, 503, "unavailable", f"could not hand the pings to Kafka: {exc}", **{"Retry-After": "5"}
            )
        metrics.PINGS_RECEIVED.labels("edge").inc(len(intake.pings))
        flagged = {index for index, _ in intake.rejected}
        metrics.observe_event_latency(
            "ingest",
            received_ts / 1000,
            (ping["device_ts"] for index, ping in enumerate(intake.pings) if index not in flagged),
        )
        metrics.HTTP_REQUESTS.labels(ROUTE, "202").inc()
        return self.json({"accepted": len(intake.pings) - len(answer), "rejected": answer}, status=202)
