"""``POST /v1/deliveries/events``: the order system and partners post delivery events, keyed by driver.

One event or ``{"events": [...]}`` from a key with the ingest, partner or internal role; the answer is 202
once every event is on ``deliveries.events``. Whether an event fits its delivery is judged downstream by
``track_drivers``, which dead-letters the misfits with their reason.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping

from confluent_kafka import KafkaException

from base import topics
from base.apikeys import POST_EVENTS, ApiKeyError, authenticate
from base.settings import Settings
from schemas.codecs import codec
from streams.deliveries import metrics
from streams.deliveries.intake import parse_events
from streams.ingest.pings import Send
from streams.ingest.reply import Reply, error
from streams.pings.intake import BadRequest

ROUTE = "/v1/deliveries/events"


class EventIntake:
    """Authenticate, parse and produce a batch of delivery events."""

    def __init__(self, settings: Settings, send: Send) -> None:
        self.settings = settings
        self.send = send
        self.topic = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
        self.encode = codec("DeliveryEvent").encode

    async def handle(self, headers: Mapping[str, str], body: Callable[[], Awaitable[bytes]]) -> Reply:
        """Answer one request, counted by status."""
        reply = await self._handle(headers, body)
        metrics.API_REQUESTS.labels(ROUTE, str(reply.status)).inc()
        return reply

    async def _handle(self, headers: Mapping[str, str], body: Callable[[], Awaitable[bytes]]) -> Reply:
        try:
            principal = authenticate(self.settings.api_keys, headers.get("X-API-Key"), POST_EVENTS)
        except ApiKeyError as exc:
            return error(exc.status, exc.reason, str(exc))
        try:
            events = parse_events(await body(), principal.fingerprint, self.settings.deliveries_max_batch)
        except BadRequest as exc:
            return error(exc.status, "bad_request", str(exc), **{"X-Bad-Field": exc.field})
        encode, topic = self.encode, self.topic
        try:
            await self.send([(topic, e["driver_id"], encode(e)) for e in events])
        except (KafkaException, TimeoutError) as exc:
            message = f"could not hand the events to Kafka: {exc!r}"
            return error(503, "unavailable", message, **{"Retry-After": "5"})
        return Reply(202, {"accepted": len(events), "event_ids": [e["event_id"] for e in events]})
