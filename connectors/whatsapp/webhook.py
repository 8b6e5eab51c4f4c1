"""The inbound webhook's work, independent of the web framework: verify, normalize, deduplicate, route.

``WebhookIntake.handle_*`` return an ``Answer`` (HTTP status and JSON body); the Faust views only read the
request and write the answer. Records are handed to Kafka and acknowledged by the broker before the provider
gets its 200; an id is claimed in Redis first (SET NX, 7 days) and released if Kafka fails, so the
provider's retry is taken and a replay of a delivered webhook is dropped.

Numbers that are not active drivers get one polite refusal per UTC day: the intake has the clear number
only while it handles the request, so it answers them here (an OutboundMessage) rather than downstream.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from base import topics
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import Catalogue, meta_language
from connectors.whatsapp.dedupe import WebhookDeduper
from connectors.whatsapp.normalize import Inbound, Normalized, PayloadError, normalize_meta, normalize_twilio
from connectors.whatsapp.optout import opt_choice
from connectors.whatsapp.phones import language_for_phone
from connectors.whatsapp.redis_pool import Commands, RedisBatcher
from connectors.whatsapp.registry import Driver, Registry, admission
from connectors.whatsapp.signatures import SignatureError, verify_meta, verify_twilio
from schemas.codecs import codec

Send = Callable[[list[tuple[str, str, bytes]]], Awaitable[None]]

ADMITTED = Driver("", "", "active", "pt-BR")
_event_codec = codec("WhatsAppEvent")
_status_codec = codec("MessageStatus")
_outbound_codec = codec("OutboundMessage")


@dataclass(frozen=True)
class Answer:
    """What the webhook answers the provider."""

    status: int
    body: dict[str, Any] = field(default_factory=dict)
    reason: str = "ok"


@dataclass(frozen=True)
class IntakeConfig:
    """Secrets and names the intake needs; a missing secret turns its provider's webhook off (503)."""

    phone_hash_key: str | None
    app_secret: str | None
    verify_token: str | None
    twilio_auth_token: str | None
    topic_prefix: str = ""
    # A rotation's previous secrets, accepted besides the current ones (the signatures are checked first
    # against the current secret).
    app_secret_previous: str | None = None
    twilio_auth_token_previous: str | None = None

    def app_secrets(self) -> tuple[str, ...]:
        return tuple(s for s in (self.app_secret, self.app_secret_previous) if s)

    def twilio_auth_tokens(self) -> tuple[str, ...]:
        return tuple(s for s in (self.twilio_auth_token, self.twilio_auth_token_previous) if s)


def verify_challenge(config: IntakeConfig, query: Mapping[str, str]) -> Answer:
    """Answer Meta's subscription check: 200 with hub.challenge when the verify token matches, else 403."""
    token = query.get("hub.verify_token", "")
    if config.verify_token is None:
        return Answer(503, {"error": "webhook_disabled"}, "webhook_disabled")
    if query.get("hub.mode") != "subscribe" or not query.get("hub.challenge"):
        needed = {"error": "bad_request", "message": "hub.mode=subscribe and hub.challenge needed"}
        return Answer(400, needed, "bad_request")
    if not hmac.compare_digest(token.encode(), config.verify_token.encode()):
        return Answer(403, {"error": "bad_verify_token"}, "bad_verify_token")
    return Answer(200, {"challenge": query["hub.challenge"]})


class WebhookIntake:
    """Everything between a provider's HTTP request and the records on Kafka."""

    def __init__(
        self,
        config: IntakeConfig,
        deduper: WebhookDeduper,
        registry: Registry | None,
        send: Send,
        catalogue: Catalogue,
    ) -> None:
        self.config = config
        self.deduper = deduper
        self.registry = registry
        self.send = send
        self.catalogue = catalogue
        self.batcher = RedisBatcher(deduper.client)
        self.events_topic = topics.qualified(topics.WHATSAPP_EVENTS_RAW, config.topic_prefix)
        self.status_topic = topics.qualified(topics.WHATSAPP_STATUS, config.topic_prefix)
        self.outbound_topic = topics.qualified(topics.WHATSAPP_OUTBOUND, config.topic_prefix)

    async def handle_meta(self, body: bytes, signature: str | None, now_ms: int | None = None) -> Answer:
        """Verify and take one Meta webhook POST."""
        if self.config.app_secret is None or self.config.phone_hash_key is None:
            return Answer(503, {"error": "webhook_disabled"}, "webhook_disabled")
        try:
            verify_meta(self.config.app_secrets(), body, signature)
        except SignatureError as exc:
            status = 401 if exc.reason == "missing_signature" else 403
            return Answer(status, {"error": exc.reason, "message": str(exc)}, exc.reason)
        received = now_ms if now_ms is not None else int(time.time() * 1000)
        try:
            normalized = normalize_meta(body, self.config.phone_hash_key, received)
        except PayloadError as exc:
            return Answer(400, {"error": exc.reason, "message": str(exc)}, exc.reason)
        return await self._route("meta", normalized, received)

    async def handle_twilio(
        self, url: str, params: Sequence[tuple[str, str]], signature: str | None, now_ms: int | None = None
    ) -> Answer:
        """Verify and take one Twilio form POST signed for ``url``."""
        if self.config.twilio_auth_token is None or self.config.phone_hash_key is None:
            return Answer(503, {"error": "webhook_disabled"}, "webhook_disabled")
        try:
            verify_twilio(self.config.twilio_auth_tokens(), url, params, signature)
        except SignatureError as exc:
            status = 401 if exc.reason == "missing_signature" else 403
            return Answer(status, {"error": exc.reason, "message": str(exc)}, exc.reason)
        received = now_ms if now_ms is not None else int(time.time() * 1000)
        # The sender names its message in the status callback URL it gives Twilio.
        message_key = dict(_query(url)).get("message_key")
        try:
            normalized = normalize_twilio(dict(params), self.config.phone_hash_key, received, message_key)
        except PayloadError as exc:
            return Answer(400, {"error": exc.reason, "message": str(exc)}, exc.reason)
        return await self._route("twilio", normalized, received)

    async def _route(self, provider: str, normalized: Normalized, received: int) -> Answer:
        for label, count in normalized.unsupported.items():
            metrics.WEBHOOK_UNSUPPORTED.labels(provider, label).inc(count)
        for reason, count in normalized.skipped.items():
            metrics.WEBHOOK_SKIPPED.labels(provider, reason).inc(count)
        ids = [m.dedupe_id for m in normalized.inbound] + [s.dedupe_id for s in normalized.statuses]
        claimed, drivers = await self._lookup(ids, normalized.inbound)
        fresh_ids = [i for i, ok in zip(ids, claimed, strict=True) if ok]
        fresh = dict(zip(ids, claimed, strict=True))
        records: list[tuple[str, str, bytes]] = []
        counted: list[str] = []
        for message, driver in zip(normalized.inbound, drivers, strict=True):
            if fresh[message.dedupe_id]:
                records.append(
                    (self.events_topic, message.record["from_hash"], _event_codec.encode(message.record))
                )
                counted.append(message.record["type"])
                if admission(driver) != "admit":
                    records.extend(await self._refusal(message, driver, received))
        for update in normalized.statuses:
            if fresh[update.dedupe_id]:
                records.append(
                    (self.events_topic, update.record["from_hash"], _event_codec.encode(update.record))
                )
                records.append(
                    (self.status_topic, update.status["message_key"], _status_codec.encode(update.status))
                )
                counted.append("status")
        try:
            if records:
                await self.send(records)
        except BaseException:  # also a cancelled request: the provider will retry, so must be able to
            await self.deduper.release(fresh_ids)
            raise
        for kind in counted:
            metrics.WEBHOOK_EVENTS.labels(provider, kind).inc()
        duplicates = len(ids) - len(fresh_ids)
        if duplicates:
            metrics.WEBHOOK_DUPLICATES.labels(provider).inc(duplicates)
        return Answer(200, {"received": len(fresh_ids), "duplicates": duplicates})

    async def _lookup(self, ids: list[str], inbound: list[Inbound]) -> tuple[list[bool], list[Driver | None]]:
        """Claim the ids and look the senders up in the registry, in one Redis round trip.

        The round trip is shared with every other request of the same event-loop turn (RedisBatcher).
        """
        if not ids:
            return [], []
        commands = Commands()
        self.deduper.queue_claims(commands, ids)
        if self.registry is not None:
            for message in inbound:
                self.registry.queue_driver_lookup(commands, message.record["from_hash"])
        replies = await self.batcher.execute(commands)
        claimed = [bool(ok) for ok in replies[: len(ids)]]
        if self.registry is None:  # no registry: everyone is let through to the conversation agent
            return claimed, [ADMITTED] * len(inbound)
        return claimed, [Registry.as_driver(raw) for raw in replies[len(ids) :]]

    async def _refusal(
        self, message: Inbound, driver: Driver | None, received: int
    ) -> list[tuple[str, str, bytes]]:
        if self.registry is None:
            return []
        from_hash = message.record["from_hash"]
        verdict = admission(driver)
        choice = opt_choice(message.record["text"]) if driver is None else None
        if choice is not None:
            return await self._opt(message, choice, received)
        day = datetime.fromtimestamp(received / 1000, UTC).strftime("%Y-%m-%d")
        answered = await self.registry.claim_refusal(from_hash, day)
        metrics.REFUSALS.labels(verdict, "true" if answered else "false").inc()
        if not answered:
            return []
        language = driver.language if driver else language_for_phone(message.phone)
        outbound = {
            "message_key": f"refusal:{from_hash}:{day}",
            "to": message.phone,
            "to_hash": from_hash,
            "template": "driver_refusal",
            "language": meta_language(language),
            "params": [],
            # The number just wrote to us, so its 24-hour window is open: free text is allowed.
            "text": self.catalogue.render("driver_refusal", language),
            "buttons": [],
            "reason": f"refusal_{verdict}",
            "driver_id": driver.driver_id if driver else None,
            "delivery_id": None,
            "created_at": received,
        }
        return [(self.outbound_topic, from_hash, _outbound_codec.encode(outbound))]

    async def _opt(self, message: Inbound, choice: str, received: int) -> list[tuple[str, str, bytes]]:
        """A customer's STOP or START: honoured from now on, and confirmed (it is the number's last message
        from us until START, which a STOP message may always get)."""
        assert self.registry is not None
        from_hash = message.record["from_hash"]
        if choice == "out":
            await self.registry.opt_out(from_hash, received)
        else:
            await self.registry.opt_in(from_hash)
        metrics.OPT_CHANGES.labels(choice).inc()
        template = "opted_out" if choice == "out" else "opted_in"
        language = language_for_phone(message.phone)
        outbound = {
            "message_key": f"{template}:{message.record['provider']}:{message.record['message_id']}",
            "to": message.phone,
            "to_hash": from_hash,
            "template": template,
            "language": meta_language(language),
            "params": [],
            "text": self.catalogue.render(template, language),
            "buttons": [],
            "reason": template,
            "driver_id": None,
            "delivery_id": None,
            "created_at": received,
        }
        return [(self.outbound_topic, from_hash, _outbound_codec.encode(outbound))]


def _query(url: str) -> list[tuple[str, str]]:
    return parse_qsl(urlsplit(url).query, keep_blank_values=True)
