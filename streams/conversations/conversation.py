"""One inbound WhatsApp event in, the records it causes out: the conversation agent's work, testable alone.

Only active drivers are talked to (the webhook already refused everyone else, once a day). The reply is
free text: the driver just wrote, so their 24-hour window is open. Each driver's chat context (the last
list or buttons shown, the door they stand at) is read for the whole batch in one Redis round trip and
written back by the agent only after the batch's records are on Kafka: a crash in between replays the
batch against the old context, which gives the same records under the same ids.
"""

from __future__ import annotations

import asyncio
import json
import logging
from dataclasses import dataclass, field
from typing import Any

from base import topics
from base.exceptions import SchemaError
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import Catalogue, meta_language
from connectors.whatsapp.chat import ChatContext, NoContexts
from connectors.whatsapp.phones import redact_phones
from connectors.whatsapp.registry import Driver, admission
from schemas.codecs import codec
from streams.conversations.answers import NEEDS_STATE, Context, Reaction, assisted, respond
from streams.conversations.dispatcher import DriverStateReader
from streams.conversations.guardrails import worst
from streams.conversations.intents import Intent, IntentKind, classify
from streams.conversations.llm import Interpretation, Interpreter

log = logging.getLogger(__name__)
CONVERSED = ("text", "button", "interactive", "location", "image")

_event_codec = codec("WhatsAppEvent")
_encoders = {
    name: codec(name) for name in ("OutboundMessage", "DeliveryEvent", "Alert", "GpsPing", "GuardrailEvent")
}
EXCERPT_CHARS = 200

Record = tuple[str, bytes, bytes]


def latest_inbound(raws: list[bytes]) -> dict[str, int]:
    """Return, per phone hash, the newest message time in a batch (statuses are not messages)."""
    latest: dict[str, int] = {}
    for raw in raws:
        try:
            event = _event_codec.decode(raw)
        except SchemaError:
            continue
        if event["type"] != "status":
            latest[event["from_hash"]] = max(event["ts"], latest.get(event["from_hash"], 0))
    return latest


@dataclass
class Handled:
    """A batch's records, and the chat contexts to write once they are on Kafka."""

    records: list[Record] = field(default_factory=list)
    contexts: dict[str, ChatContext | None] = field(default_factory=dict)


@dataclass
class Conversation:
    """Everything the agent needs: who is who, the drivers' state, the wording, where records go."""

    registry: Any  # connectors.whatsapp.registry.Registry, or anything with ``drivers_by_hash``
    read_state: DriverStateReader
    catalogue: Catalogue
    topic_prefix: str = ""
    utc_offset_h: float = -3.0
    interpreter: Interpreter = field(default_factory=Interpreter)
    llm_concurrency: int = 8
    contexts: Any = field(default_factory=NoContexts)  # ContextStore, or anything with load and save

    def _topic(self, name: str) -> str:
        return topics.qualified(name, self.topic_prefix)

    async def handle(self, raws: list[bytes]) -> list[Record]:
        """Return the records a batch of raw ``whatsapp.events.raw`` values causes, and save the contexts
        it leaves at once (tests; the agent uses ``take`` and saves after delivery)."""
        handled = await self.take(raws)
        await self.contexts.save(handled.contexts)
        return handled.records

    async def remember(self, handled: Handled) -> None:
        """Keep the chat contexts a delivered batch left."""
        await self.contexts.save(handled.contexts)

    async def take(self, raws: list[bytes]) -> Handled:
        """Return the records a batch of raw ``whatsapp.events.raw`` values causes and the contexts it leaves.

        Statuses and reactions cause nothing, nor do numbers that are not active drivers (the webhook
        already refused them, once a day). The senders are looked up in one Redis round trip, their
        contexts in another.
        """
        events = []
        for raw in raws:
            try:
                event = _event_codec.decode(raw)
            except SchemaError:
                metrics.CONVERSATION_ERRORS.labels("undecodable").inc()
                continue
            if event["type"] in CONVERSED:
                events.append(event)
        drivers = await self.registry.drivers_by_hash([e["from_hash"] for e in events])
        admitted = [d.driver_id for d in drivers if d is not None and admission(d) == "admit"]
        chats = await self.contexts.load(sorted(set(admitted)))
        # The model may take seconds: every message of the batch is read at once, then answered in order.
        gate = asyncio.Semaphore(self.llm_concurrency)
        meanings = await asyncio.gather(
            *(self._meaning(event, driver, gate) for event, driver in zip(events, drivers, strict=True))
        )
        handled = Handled()
        for event, driver, meant in zip(events, drivers, meanings, strict=True):
            if admission(driver) != "admit" or driver is None or meant is None:
                metrics.CONVERSATION_ERRORS.labels("not_admitted").inc()
                continue
            try:
                reaction = await self._converse(event, driver, chats.get(driver.driver_id), meant)
            except Exception:
                log.exception("conversation: could not handle one event; skipped")
                metrics.CONVERSATION_ERRORS.labels("handler_error").inc()
                continue
            handled.records += self._records(event, driver, reaction)
            handled.records += self._guardrail_records(event, driver, meant)
            if reaction.sets_context:
                chats[driver.driver_id] = handled.contexts[driver.driver_id] = reaction.context
        return handled

    async def _converse(
        self, event: dict[str, Any], driver: Driver, chat: ChatContext | None, meant: Interpretation
    ) -> Reaction:
        intent = meant.intent
        ctx = Context(driver, self.catalogue, self.utc_offset_h)
        grade = worst(meant.hits)
        if grade in ("warn", "block") or meant.unavailable or meant.reply:
            reason = next((h.reason for h in meant.hits if h.grade == grade), None)
            state = await self.read_state(driver.driver_id) if grade == "block" else None
            reaction = assisted(
                ctx,
                event,
                state,
                grade=grade,
                reason=reason,
                unavailable=meant.unavailable,
                reply=meant.reply,
            )
            if reaction is not None:
                return self._counted(reaction, intent, event, driver)
        needs = (
            intent.kind in NEEDS_STATE
            or intent.kind == IntentKind.CHOICE
            or (intent.kind == IntentKind.LOCATION and chat is not None and chat.kind == "at_door")
        )
        state = await self.read_state(driver.driver_id) if needs else None
        return self._counted(respond(intent, event, state, ctx, chat), intent, event, driver)

    def _counted(self, reaction: Reaction, intent: Intent, event: dict[str, Any], driver: Driver) -> Reaction:
        metrics.CONVERSATION_EVENTS.labels(str(intent.kind), driver.language).inc()
        if reaction.refusal is not None:
            metrics.CONVERSATION_REFUSALS.labels(reaction.refusal).inc()
            log.info(
                "conversation: refused %s from driver %s (message %s): %s",
                intent.kind,
                driver.driver_id,
                event["message_id"],
                reaction.refusal,
            )
        return reaction

    async def _meaning(
        self, event: dict[str, Any], driver: Driver | None, gate: asyncio.Semaphore
    ) -> Interpretation | None:
        """What one message means, or None for a number that is not an active driver."""
        if driver is None or admission(driver) != "admit":
            return None
        if event["type"] == "location":
            return Interpretation(Intent(IntentKind.LOCATION))
        if event["type"] == "image":
            return Interpretation(Intent(IntentKind.PHOTO))
        try:
            payload = json.loads(event["payload"] or "{}")
            button = payload.get("payload") or payload.get("id") if isinstance(payload, dict) else None
        except ValueError:
            button = None
        async with gate:
            try:
                return await self.interpreter.interpret(
                    event["text"], driver.language, driver.driver_id, button
                )
            except Exception:  # the model's cache or budget unreadable: the rules still answer
                log.exception("conversation: the language model's path failed; the rules answer")
                metrics.CONVERSATION_ERRORS.labels("interpreter_error").inc()
                closed = self.interpreter.fail_mode == "closed" and self.interpreter.model is not None
                return Interpretation(classify(event["text"], button), model="error", unavailable=closed)

    def _guardrail_records(
        self, event: dict[str, Any], driver: Driver, meant: Interpretation
    ) -> list[Record]:
        records = []
        for hit in meant.hits:
            read = meant.reply if hit.stage == "output" else event["text"]
            value = {
                "event_id": f"guard:{event['provider']}:{event['message_id']}:{hit.stage}:{hit.reason}",
                "ts": event["ts"],
                "driver_id": driver.driver_id,
                "from_hash": event["from_hash"],
                "provider": event["provider"],
                "message_id": event["message_id"],
                "stage": hit.stage,
                "reason": hit.reason,
                "grade": hit.grade,
                "excerpt": redact_phones(read or "")[:EXCERPT_CHARS],
            }
            encoded = _encoders["GuardrailEvent"].encode(value)
            records.append((self._topic(topics.CONVERSATIONS_GUARDRAILS), driver.driver_id.encode(), encoded))
        return records

    def _records(self, event: dict[str, Any], driver: Driver, reaction: Reaction) -> list[Record]:
        key = driver.driver_id.encode()
        records: list[Record] = []
        if reaction.ping is not None:
            records.append(
                (self._topic(topics.GPS_PINGS_RAW), key, _encoders["GpsPing"].encode(reaction.ping))
            )
        if reaction.delivery_event is not None:
            value = _encoders["DeliveryEvent"].encode(reaction.delivery_event)
            records.append((self._topic(topics.DELIVERIES_EVENTS), key, value))
        if reaction.alert is not None:
            records.append((self._topic(topics.ALERTS), key, _encoders["Alert"].encode(reaction.alert)))
        reply = {
            "message_key": f"reply:{event['provider']}:{event['message_id']}",
            "to": driver.phone,
            "to_hash": event["from_hash"],
            "template": None,
            "language": meta_language(driver.language),
            "params": [],
            "text": reaction.reply,
            "buttons": [title for _, title in reaction.buttons],
            "button_ids": [payload for payload, _ in reaction.buttons],
            "reason": f"reply_{reaction.outcome}",
            "driver_id": driver.driver_id,
            "delivery_id": (reaction.delivery_event or {}).get("delivery_id"),
            "created_at": event["received_ts"],
        }
        value = _encoders["OutboundMessage"].encode(reply)
        records.append((self._topic(topics.WHATSAPP_OUTBOUND), event["from_hash"].encode(), value))
        return records
