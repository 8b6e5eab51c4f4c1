"""``whatsup sender``: consume whatsapp.outbound with aiokafka and send every message exactly once.

Offsets are committed only after every record of a batch has reached a final state (sent, dead-lettered,
or skipped as already claimed), so a crash replays the batch and the Redis claims turn the replay into
no-ops. Records of one recipient are sent in order; recipients are sent concurrently.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import httpx
from aiohttp import web
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord
from aiokafka.errors import CommitFailedError, IllegalStateError
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from redis.asyncio import Redis

from base import metrics, topics
from base.backlog import sampling_backlog
from base.exceptions import SettingsError
from base.logs import configure_logging
from base.settings import Settings
from base.tls import aiokafka_config, server_context
from connectors.whatsapp.breaker import CircuitBreaker
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.claims import ClaimStore
from connectors.whatsapp.cloud import WhatsAppCloudClient
from connectors.whatsapp.confirm import find_confirmation, read_record
from connectors.whatsapp.late_failure import LateWindowFallback
from connectors.whatsapp.outbound import Outbound
from connectors.whatsapp.ratelimit import RedisTokenBucket
from connectors.whatsapp.route import STATUS, Policy, Route
from connectors.whatsapp.sender import Sender
from connectors.whatsapp.twilio import TwilioClient
from schemas.codecs import codec

log = logging.getLogger(__name__)


def redis_prefix(settings: Settings) -> str:
    """Return the Redis key prefix of this deployment's sender (tests and topic prefixes stay apart)."""
    return f"{settings.app_id}:{settings.topic_prefix}sender:"


def require_credentials(settings: Settings) -> tuple[str, str]:
    """Return the Cloud API token and phone number id, or stop with the variables to set."""
    if not (settings.whatsapp_token and settings.whatsapp_phone_number_id):
        raise SettingsError("WHATSUP_WHATSAPP_TOKEN and WHATSUP_WHATSAPP_PHONE_NUMBER_ID must be set to send")
    return settings.whatsapp_token, settings.whatsapp_phone_number_id


def build_routes(settings: Settings, http: httpx.AsyncClient, redis: Redis) -> tuple[Route, Route | None]:
    """Build the Meta route and, when Twilio is configured, the fallback route."""
    token, number = require_credentials(settings)
    prefix = redis_prefix(settings)

    def breaker() -> CircuitBreaker:
        return CircuitBreaker(settings.sender_breaker_failures, settings.sender_breaker_reset_s)

    def bucket(name: str) -> RedisTokenBucket:
        return RedisTokenBucket(
            redis, f"{prefix}bucket:{name}", settings.sender_rate_per_s, settings.sender_burst
        )

    meta_client = WhatsAppCloudClient(
        http,
        api_url=settings.whatsapp_api_url,
        version=settings.whatsapp_api_version,
        phone_number_id=number,
        token=token,
    )
    meta = Route(meta_client, breaker(), bucket(f"meta:{number}"))
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
        return meta, None
    twilio_client = TwilioClient(
        http,
        api_url=settings.twilio_api_url,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        from_number=settings.twilio_from,
        content_sids=settings.twilio_content_sids,
        status_callback=settings.twilio_status_callback_url,
    )
    sids = settings.twilio_content_sids

    def has_content(message: Outbound) -> bool:
        return f"{message.template}:{message.language}" in sids or (message.template or "") in sids

    return meta, Route(twilio_client, breaker(), bucket(f"twilio:{settings.twilio_account_sid}"), has_content)


def _by_recipient(records: Sequence[ConsumerRecord[Any, Any]]) -> list[list[ConsumerRecord[Any, Any]]]:
    groups: dict[bytes | None, list[ConsumerRecord[Any, Any]]] = defaultdict(list)
    for record in records:
        groups[record.key].append(record)
    return list(groups.values())


class SenderService:
    """The sender process: Kafka in and out, Redis, HTTP clients, metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.owner = uuid.uuid4().hex[:12]
        self.consuming = False
        self.consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()
        self.outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
        self.status_topic = topics.qualified(topics.WHATSAPP_STATUS, settings.topic_prefix)
        self.dead_topic = topics.qualified(topics.WHATSAPP_OUTBOUND_DEAD, settings.topic_prefix)
        self._encode = codec("MessageStatus").encode

    def stop(self) -> None:
        """Ask the loop to stop after the batch in hand."""
        self._stopping.set()

    async def run(self) -> None:
        """Consume until stopped."""
        s = self.settings
        require_credentials(s)
        catalogue = load_catalogue()
        fallback = s.sender_fallback_template
        if fallback is not None and fallback not in catalogue.templates:
            raise SettingsError(f"WHATSUP_SENDER_FALLBACK_TEMPLATE {fallback!r} is not a catalogue template")
        redis = Redis.from_url(s.redis_url)
        timeout = httpx.Timeout(s.sender_timeout_s, connect=min(5.0, s.sender_timeout_s))
        limits = httpx.Limits(
            max_connections=s.sender_concurrency, max_keepalive_connections=s.sender_concurrency
        )
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:
            meta, twilio = build_routes(s, http, redis)
            security = aiokafka_config(s)
            producer = AIOKafkaProducer(
                bootstrap_servers=s.kafka_bootstrap,
                acks="all",
                enable_idempotence=True,
                linger_ms=2,
                **security,
            )
            consumer = AIOKafkaConsumer(
                self.outbound,
                bootstrap_servers=s.kafka_bootstrap,
                group_id=topics.consumer_group("sender", s.app_id),
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=s.sender_batch_size,
                # A batch waits for its slowest message's backoff; stay in the group meanwhile.
                max_poll_interval_ms=30 * 60_000,
                **security,
            )
            self.consumer = consumer
            routes = [route for route in (meta, twilio) if route is not None]
            for route in routes:
                await route.client.start()

            async def emit(kind: str, record: dict[str, Any]) -> None:
                topic = self.status_topic if kind == STATUS else self.dead_topic
                await producer.send_and_wait(topic, self._encode(record), key=record["message_key"].encode())

            async def confirm(message_key: str, since_ms: int) -> dict[str, Any] | None:
                return await find_confirmation(
                    s.kafka_bootstrap,
                    self.status_topic,
                    s.partitions,
                    message_key,
                    since_ms,
                    security=security,
                )

            sender = Sender(
                meta=meta,
                twilio=twilio,
                claims=ClaimStore(
                    redis, f"{redis_prefix(s)}claim:", self.owner, s.sender_claim_ttl_hours * 3600
                ),
                emit=emit,
                confirm=confirm,
                policy=Policy(
                    max_attempts=s.sender_max_attempts,
                    backoff_base_s=s.sender_backoff_base_s,
                    backoff_max_s=s.sender_backoff_max_s,
                    confirm_wait_s=s.sender_confirm_wait_s,
                    fallback_template=s.sender_fallback_template,
                    catalogue=catalogue,
                ),
            )

            async def read_original(source: str) -> bytes | None:
                return await read_record(s.kafka_bootstrap, source, security=security)

            async def requeue(key: bytes, value: bytes) -> None:
                await producer.send_and_wait(self.outbound, value, key=key)

            late = LateWindowFallback(
                sender.claims,
                read_original,
                requeue,
                s.sender_fallback_template,
                max_age_s=s.sender_late_fallback_max_age_s,
            )
            statuses = AIOKafkaConsumer(
                self.status_topic,
                bootstrap_servers=s.kafka_bootstrap,
                group_id=f"{s.app_id}-sender-late-window",
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                **security,
            )
            await producer.start()
            await consumer.start()
            await statuses.start()
            log.info("sender %s consuming %s", self.owner, self.outbound)
            self.consuming = True
            watcher = asyncio.create_task(self._watch_statuses(statuses, late))
            try:
                await self._consume(consumer, sender)
            finally:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
                await statuses.stop()
                await consumer.stop()
                await producer.stop()
                for route in routes:
                    await route.client.stop()
                await redis.aclose()

    async def _consume(self, consumer: AIOKafkaConsumer, sender: Sender) -> None:
        gate = asyncio.Semaphore(self.settings.sender_concurrency)

        async def send_group(records: list[ConsumerRecord[Any, Any]]) -> None:
            async with gate:
                for record in records:
                    where = f"{record.topic}:{record.partition}:{record.offset}"
                    await sender.handle(record.value, record.key, where)

        while not self._stopping.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=self.settings.sender_batch_size)
            if not batch:
                continue
            records = [record for part in batch.values() for record in part]
            started = time.perf_counter()
            await asyncio.gather(*(send_group(group) for group in _by_recipient(records)))
            log.debug("sent a batch of %d in %.3f s", len(records), time.perf_counter() - started)
            assigned = consumer.assignment()
            offsets = {tp: part[-1].offset + 1 for tp, part in batch.items() if tp in assigned}
            try:
                if offsets:
                    await consumer.commit(offsets)
            except (CommitFailedError, IllegalStateError):
                # The partitions moved during a rebalance; their new owner replays and the claims skip.
                log.warning("offset commit refused after a rebalance; the new owner will skip what was sent")

    async def _watch_statuses(self, consumer: AIOKafkaConsumer, late: LateWindowFallback) -> None:
        """Follow whatsapp.status for late 131047 failures; commit only what was handled."""
        try:
            while not self._stopping.is_set():
                batch = await consumer.getmany(timeout_ms=500, max_records=500)
                for part in batch.values():
                    for record in part:
                        await late.handle(record.value, int(time.time() * 1000))
                offsets = {tp: part[-1].offset + 1 for tp, part in batch.items()}
                if offsets:
                    with contextlib.suppress(CommitFailedError, IllegalStateError):
                        await consumer.commit(offsets)
        except asyncio.CancelledError:
            raise
        except Exception:
            # Kafka or Redis failing under the watcher is the sender's failure too: stop, replay on restart.
            log.exception("the late-window watcher failed; stopping the sender")
            self.stop()
            raise


async def serve_metrics(settings: Settings, service: SenderService) -> web.AppRunner:
    """Serve ``/metrics`` and ``/health`` on WHATSUP_SENDER_METRICS_PORT."""

    async def metrics_view(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def health(request: web.Request) -> web.Response:
        partitions = len(service.consumer.assignment()) if service.consumer is not None else 0
        state = "ok" if service.consuming else "starting"
        return web.json_response({"status": state, "owner": service.owner, "partitions": partitions})

    app = web.Application()
    app.add_routes([web.get("/metrics", metrics_view), web.get("/health", health)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    context = server_context(settings)
    await web.TCPSite(runner, settings.web_host, settings.sender_metrics_port, ssl_context=context).start()
    return runner


def run_sender(settings: Settings) -> int:
    """Run the sender until SIGTERM or SIGINT; serve metrics on WHATSUP_SENDER_METRICS_PORT."""
    configure_logging(settings)
    metrics.mark_up("sender")
    # httpx logs every request at INFO: one line per message is noise, the metrics count them.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLogger().level))
    service = SenderService(settings)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, service.stop)
        runner = await serve_metrics(settings, service) if settings.metrics_enabled else None
        sampling: contextlib.AbstractAsyncContextManager[object] = (
            sampling_backlog(settings, "sender") if settings.metrics_enabled else contextlib.nullcontext()
        )
        try:
            async with sampling:
                await service.run()
        finally:
            if runner is not None:
                await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())
    return 0
