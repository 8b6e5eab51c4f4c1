"""``GET/POST /webhooks/whatsapp`` (Meta) and ``POST /webhooks/twilio``: thin handlers over WebhookIntake.

A 200 means the events are durably on Kafka; a Kafka or Redis failure answers 503 and the provider retries.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Mapping
from urllib.parse import parse_qsl

from confluent_kafka import KafkaException
from redis.exceptions import RedisError

from base.settings import Settings
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.dedupe import WebhookDeduper
from connectors.whatsapp.redis_pool import shared_redis
from connectors.whatsapp.registry import Registry
from connectors.whatsapp.webhook import Answer, IntakeConfig, WebhookIntake, verify_challenge
from streams.ingest.pings import Send
from streams.ingest.reply import Reply

META_ROUTE = "/webhooks/whatsapp"
TWILIO_ROUTE = "/webhooks/twilio"


async def _guarded(work: Awaitable[Answer]) -> Answer:
    """Await the intake; a Kafka or Redis failure is a 503 the provider retries."""
    try:
        return await work
    except (KafkaException, TimeoutError) as exc:
        return Answer(503, {"error": "unavailable", "message": f"Kafka: {exc!r}"}, "kafka_unavailable")
    except RedisError as exc:
        return Answer(503, {"error": "unavailable", "message": f"Redis: {exc}"}, "redis_unavailable")


def _counted(provider: str, answer: Answer, started: float) -> Reply:
    metrics.WEBHOOK_REQUESTS.labels(provider, str(answer.status), answer.reason).inc()
    metrics.WEBHOOK_LATENCY.labels(provider).observe(time.perf_counter() - started)
    return Reply(answer.status, answer.body, reason=answer.reason)


class Webhooks:
    """The WhatsApp providers' webhooks of one process, sharing its producer and Redis client."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self.settings = settings
        self.send = send
        self.config = IntakeConfig(
            phone_hash_key=settings.phone_hash_key,
            app_secret=settings.whatsapp_app_secret,
            verify_token=settings.whatsapp_verify_token,
            twilio_auth_token=settings.twilio_auth_token,
            topic_prefix=settings.topic_prefix,
            app_secret_previous=settings.whatsapp_app_secret_previous,
            twilio_auth_token_previous=settings.twilio_auth_token_previous,
        )
        self._intake: WebhookIntake | None = None

    def intake(self) -> WebhookIntake:
        """Return the intake, built on first use (the Redis client binds to the running loop)."""
        if self._intake is None:
            settings = self.settings
            client = shared_redis(settings.redis_url)
            registry = (
                Registry(client, settings.phone_hash_key, settings.topic_prefix)
                if settings.phone_hash_key
                else None
            )
            deduper = WebhookDeduper(client, settings.topic_prefix)
            self._intake = WebhookIntake(self.config, deduper, registry, self.send, load_catalogue())
        return self._intake

    def challenge(self, query: Mapping[str, str]) -> Reply:
        """Answer Meta's subscription check: the challenge as text, or a refusal."""
        answer = verify_challenge(self.config, query)
        metrics.WEBHOOK_REQUESTS.labels("meta", str(answer.status), answer.reason).inc()
        if answer.status == 200:
            return Reply(200, str(answer.body["challenge"]))
        return Reply(answer.status, answer.body, reason=answer.reason)

    async def meta(self, body: bytes, signature: str | None) -> Reply:
        """Take one signed Meta notification."""
        started = time.perf_counter()
        answer = await _guarded(self.intake().handle_meta(body, signature))
        return _counted("meta", answer, started)

    async def twilio(self, url: str, query_string: str, body: bytes, signature: str | None) -> Reply:
        """Take one signed Twilio form post; ``url`` is the URL this process saw."""
        started = time.perf_counter()
        try:
            params = parse_qsl(body.decode(), keep_blank_values=True, strict_parsing=False)
        except UnicodeDecodeError:
            return _counted("twilio", Answer(400, {"error": "malformed_form"}, "malformed_form"), started)
        # Twilio signs the public URL it posted to; behind a proxy that is not the URL we see.
        public = self.settings.twilio_webhook_url
        if public:
            url = f"{public}?{query_string}" if query_string else public
        answer = await _guarded(self.intake().handle_twilio(url, params, signature))
        return _counted("twilio", answer, started)
