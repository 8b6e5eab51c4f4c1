"""The notify agents' work, testable alone: look up recipients and memories, ask the policy, emit messages."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from base import topics
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import Catalogue
from connectors.whatsapp.chat import ChatContext, NoContexts, options
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.registry import Registry, admission
from schemas.codecs import codec
from streams.notify import policy
from streams.notify.policy import CustomerMemory, Decision, NotifyConfig, Recipient
from streams.notify.store import NotifyStore

_outbound = codec("OutboundMessage")
Record = tuple[str, bytes, bytes]


@dataclass(frozen=True)
class Outcome:
    """Messages to deliver, then the customer memory to keep once they are delivered."""

    records: list[Record] = field(default_factory=list)
    delivery_id: str | None = None
    memory: CustomerMemory | None = None
    # A driver's chat context to set once the message is delivered (an offer's buttons answer to "1", "2").
    chat: tuple[str, ChatContext] | None = None


@dataclass
class Notifier:
    """Registry, store, wording and policy knobs: everything the notify agents need."""

    registry: Registry
    store: NotifyStore
    catalogue: Catalogue
    config: NotifyConfig
    topic_prefix: str = ""
    contexts: Any = field(default_factory=NoContexts)  # connectors.whatsapp.chat.ContextStore

    async def _driver(self, driver_id: str) -> Recipient | None:
        driver = await self.registry.driver_by_id(driver_id)
        if admission(driver) != "admit" or driver is None:
            return None
        return Recipient(driver.phone, hash_phone(self.registry.hash_key, driver.phone), driver.language)

    async def _customer(self, delivery_id: str | None) -> Recipient | None:
        """The delivery's customer, unless they wrote STOP (counted as ``opted_out``)."""
        ref = await self.store.customer_ref(delivery_id) if delivery_id else None
        customer = await self.registry.customer(ref) if ref else None
        if customer is None:
            return None
        phone_hash = hash_phone(self.registry.hash_key, customer.phone)
        if await self.registry.opted_out(phone_hash):
            metrics.NOTIFY_SUPPRESSED.labels("opted_out").inc()
            return None
        return Recipient(customer.phone, phone_hash, customer.language)

    async def _driver_name(self, driver_id: str) -> str:
        driver = await self.registry.driver_by_id(driver_id)
        return driver.first_name if driver is not None else ""

    def _outcome(self, decision: Decision, delivery_id: str | None = None) -> Outcome:
        if decision.message is None:
            metrics.NOTIFY_SUPPRESSED.labels(decision.reason).inc()
            return Outcome([], delivery_id, decision.memory)
        message = decision.message
        mode = "text" if message["text"] else "template"
        metrics.NOTIFY_MESSAGES.labels(message["reason"], mode).inc()
        topic = topics.qualified(topics.WHATSAPP_OUTBOUND, self.topic_prefix)
        record = (topic, message["to_hash"].encode(), _outbound.encode(message))
        return Outcome([record], delivery_id, decision.memory)

    async def settle(self, outcome: Outcome) -> None:
        """Keep the customer memory of a delivered outcome.

        Only after delivery: a crash in between replays the cause against the old memory, which decides
        the same message under the same key (the sender sends it once); the other order would lose it.
        """
        if outcome.memory is not None and outcome.delivery_id:
            await self.store.remember(outcome.delivery_id, outcome.memory)
        if outcome.chat is not None:
            driver_id, context = outcome.chat
            await self.contexts.save({driver_id: context})

    async def on_eta(self, update: dict[str, Any]) -> Outcome:
        """Return the messages an EtaUpdate causes (and remember what the customer was told)."""
        customer = await self._customer(update["delivery_id"])
        memory = await self.store.memory(update["delivery_id"])
        inbound = await self.store.last_inbound(customer.phone_hash) if customer else None
        name = await self._driver_name(update["driver_id"]) if customer else ""
        decision = policy.decide_eta(update, customer, memory, inbound, self.catalogue, self.config, name)
        return self._outcome(decision, update["delivery_id"])

    async def on_alert(self, alert: dict[str, Any]) -> Outcome:
        """Return the messages an Alert causes."""
        delivery_id = alert.get("delivery_id")
        driver = await self._driver(alert["driver_id"]) if alert["kind"] == "stall" else None
        customer = await self._customer(delivery_id) if alert["kind"] == "late_risk" else None
        memory = await self.store.memory(delivery_id) if delivery_id else CustomerMemory()
        inbound = {r.phone_hash: await self.store.last_inbound(r.phone_hash) for r in (driver, customer) if r}
        decision = policy.decide_alert(alert, driver, customer, memory, inbound, self.catalogue, self.config)
        return self._outcome(decision, delivery_id)

    async def on_delivery_event(self, event: dict[str, Any]) -> Outcome:
        """Remember the delivery's customer; return the message an applied step sends, if any: the offer
        of an assignment to its driver; to its customer, the pickup, the departure, the delivery, the
        failure."""
        if event.get("customer_ref"):
            await self.store.remember_customer(event["delivery_id"], event["customer_ref"])
        if event["type"] == "assigned":
            driver = await self._driver(event["driver_id"])
            inbound = await self.store.last_inbound(driver.phone_hash) if driver else None
            decision = policy.decide_offer(event, driver, inbound, self.catalogue, self.config)
            outcome = self._outcome(decision, event["delivery_id"])
            if decision.message is None:
                return outcome
            offered = options(*policy.offer_buttons(event["delivery_id"]), at=int(event["ts"]))
            return Outcome(
                outcome.records, outcome.delivery_id, outcome.memory, (event["driver_id"], offered)
            )
        if event["type"] in policy.STEP_TEMPLATES:
            customer = await self._customer(event["delivery_id"])
            if customer is None:
                return self._outcome(policy.Decision(None, "no_customer"), event["delivery_id"])
            memory = await self.store.memory(event["delivery_id"])
            inbound = await self.store.last_inbound(customer.phone_hash)
            name = await self._driver_name(event["driver_id"])
            decision = policy.decide_step(event, customer, name, memory, inbound, self.catalogue, self.config)
            return self._outcome(decision, event["delivery_id"])
        if event["type"] != "delivered":
            return Outcome()
        customer = await self._customer(event["delivery_id"])
        inbound = await self.store.last_inbound(customer.phone_hash) if customer else None
        return self._outcome(policy.decide_delivered(event, customer, inbound, self.catalogue, self.config))
