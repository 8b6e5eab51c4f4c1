"""The notify agents: alerts, ETA updates and delivery events become WhatsApp messages by policy.

Each agent decodes its own records (a bad one is counted and skipped), asks the Notifier, delivers the
messages to ``whatsapp.outbound`` (acknowledged by the broker) and only then keeps the customer memory.
Each number's 24-hour window (when it last wrote to us) is recorded by the conversation agent, the one
reader of ``whatsapp.events.raw``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from redis.exceptions import RedisError

from base import tracking
from base.exceptions import SchemaError
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.chat import ContextStore
from connectors.whatsapp.outbox import Outbox
from connectors.whatsapp.redis_pool import shared_redis
from connectors.whatsapp.registry import Registry
from schemas.codecs import codec
from streams.app import (
    app,
    notify_alerts_topic,
    notify_delivery_events_topic,
    notify_eta_topic,
    settings,
)
from streams.notify.notifier import Notifier, Outcome
from streams.notify.policy import NotifyConfig
from streams.notify.store import NotifyStore

log = logging.getLogger(__name__)
outbox = Outbox(settings)
_notifier: Notifier | None = None


def notifier() -> Notifier:
    """Return the worker's Notifier, built on first use (its Redis client binds to the running loop)."""
    global _notifier
    if _notifier is None:
        client = shared_redis(settings.redis_url)
        config = NotifyConfig(
            eta_threshold_ms=int(settings.notify_eta_threshold_s * 1000),
            customer_interval_ms=int(settings.notify_customer_interval_s * 1000),
            utc_offset_h=settings.display_utc_offset_h,
            tracking_base_url=tracking.base_url(settings),
            tracking_secret=settings.token_secret or "",
            tracking_ttl_ms=int(settings.tracking_ttl_h * 3_600_000),
        )
        _notifier = Notifier(
            registry=Registry(client, settings.phone_hash_key or "", settings.topic_prefix),
            store=NotifyStore(client, settings.topic_prefix),
            catalogue=load_catalogue(),
            config=config,
            topic_prefix=settings.topic_prefix,
            contexts=ContextStore(client, settings.topic_prefix, int(settings.conversation_context_ttl_s)),
        )
    return _notifier


async def _notify(schema: str, value: bytes, handle: Callable[[dict[str, Any]], Awaitable[Outcome]]) -> None:
    if not settings.phone_hash_key:
        metrics.NOTIFY_SUPPRESSED.labels("no_phone_hash_key").inc()
        return
    try:
        outcome = await handle(codec(schema).decode(value))
    except SchemaError:
        metrics.NOTIFY_SUPPRESSED.labels("undecodable").inc()
        return
    except RedisError:
        raise  # no memory, no registry: stop rather than skip every notification
    except Exception:
        log.exception("notify: could not handle one %s; skipped", schema)
        metrics.NOTIFY_SUPPRESSED.labels("handler_error").inc()
        return
    await outbox.deliver(outcome.records)
    await notifier().settle(outcome)


@app.agent(notify_alerts_topic, concurrency=1)
async def notify_alerts(stream: faust.StreamT[bytes]) -> None:
    """Send stalled drivers a check-in and customers of late deliveries a delay notice."""
    async for value in stream:
        await _notify("Alert", value, notifier().on_alert)


@app.agent(notify_eta_topic, concurrency=1)
async def notify_eta_changes(stream: faust.StreamT[bytes]) -> None:
    """Tell customers of real ETA shifts, at most once per interval."""
    async for value in stream:
        await _notify("EtaUpdate", value, notifier().on_eta)


@app.agent(notify_delivery_events_topic, concurrency=1)
async def notify_deliveries(stream: faust.StreamT[bytes]) -> None:
    """Learn each delivery's customer, offer assignments to their drivers, tell customers of delivery."""
    async for value in stream:
        await _notify("DeliveryEvent", value, notifier().on_delivery_event)
