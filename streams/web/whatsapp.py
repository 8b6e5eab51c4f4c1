"""``GET/POST /webhooks/whatsapp`` (Meta) and ``POST /webhooks/twilio``: thin views over WebhookIntake.

The records go out through a librdkafka producer (acks=all, idempotent), so a 200 means the events are
durably on Kafka; a Kafka or Redis failure answers 503 and the provider retries.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from urllib.parse import parse_qsl

from confluent_kafka import KafkaException
from faust.web import Request, Response, View
from mode import Service
from redis.exceptions import RedisError

from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.dedupe import WebhookDeduper
from connectors.whatsapp.producer import AsyncProducer
from connectors.whatsapp.redis_pool import shared_redis
from connectors.whatsapp.registry import Registry
from connectors.whatsapp.webhook import Answer, IntakeConfig, WebhookIntake, verify_challenge
from streams.app import app, settings

META_ROUTE = "/webhooks/whatsapp"
TWILIO_ROUTE = "/webhooks/twilio"

config = IntakeConfig(
    phone_hash_key=settings.phone_hash_key,
    app_secret=settings.whatsapp_app_secret,
    verify_token=settings.whatsapp_verify_token,
    twilio_auth_token=settings.twilio_auth_token,
    topic_prefix=settings.topic_prefix,
)
producer = AsyncProducer(settings)
_intake: WebhookIntake | None = None


@app.service
class WebhookProducerService(Service):
    """Tie the webhook producer's life to the worker's: queued records are delivered on shutdown."""

    async def on_stop(self) -> None:
        await asyncio.to_thread(producer.stop)


def intake() -> WebhookIntake:
    """Return the process's intake, built on first use (the Redis client binds to the running loop)."""
    global _intake
    if _intake is None:
        client = shared_redis(settings.redis_url)
        registry = (
            Registry(client, settings.phone_hash_key, settings.topic_prefix)
            if settings.phone_hash_key
            else None
        )
        deduper = WebhookDeduper(client, settings.topic_prefix)
        _intake = WebhookIntake(config, deduper, registry, producer.send_all, load_catalogue())
    return _intake


def _respond(view: View, provider: str, answer: Answer, started: float) -> Response:
    metrics.WEBHOOK_REQUESTS.labels(provider, str(answer.status), answer.reason).inc()
    metrics.WEBHOOK_LATENCY.labels(provider).observe(time.perf_counter() - started)
    return view.json(answer.body, status=answer.status)


async def _guarded(work: Awaitable[Answer]) -> Answer:
    """Await the intake; a Kafka or Redis failure is a 503 the provider retries."""
    try:
        return await work
    except (KafkaException, TimeoutError) as exc:
        return Answer(503, {"error": "unavailable", "message": f"Kafka: {exc!r}"}, "kafka_unavailable")
    except RedisError as exc:
        return Answer(503, {"error": "unavailable", "message": f"Redis: {exc}"}, "redis_unavailable")


@app.page(META_ROUTE)
class MetaWebhookView(View):
    """Meta's webhook: the subscription check and signed notifications."""

    async def get(self, request: Request) -> Response:
        answer = verify_challenge(config, request.query)
        metrics.WEBHOOK_REQUESTS.labels("meta", str(answer.status), answer.reason).inc()
        if answer.status == 200:
            return self.text(answer.body["challenge"])
        return self.json(answer.body, status=answer.status)

    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await request.read()
        work = intake().handle_meta(body, request.headers.get("X-Hub-Signature-256"))
        return _respond(self, "meta", await _guarded(work), started)


@app.page(TWILIO_ROUTE)
class TwilioWebhookView(View):
    """Twilio's WhatsApp webhook: inbound messages and status callbacks, as signed form posts."""

    async def post(self, request: Request) -> Response:
        started = time.perf_counter()
        body = await request.read()
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return _respond(
                self, "twilio", Answer(400, {"error": "malformed_form"}, "malformed_form"), started
            )
        # Twilio signs the public URL it posted to; behind a proxy that is not the URL we see.
        url = settings.twilio_webhook_url or str(request.url)
        if settings.twilio_webhook_url and request.query_string:
            url = f"{url}?{request.query_string}"
        work = intake().handle_twilio(url, params, request.headers.get("X-Twilio-Signature"))
        return _respond(self, "twilio", await _guarded(work), started)
