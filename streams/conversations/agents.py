"""The conversation agent: drivers' WhatsApp messages in; replies, delivery events, alert notes, pings out.

It is the one reader of ``whatsapp.events.raw`` and also records each number's 24-hour window (when it last
wrote to us) for the notify agents.
"""

from __future__ import annotations

import logging

import faust
import httpx

from base import tls
from connectors.llm.client import ChatClient
from connectors.llm.memory import Budget, ResponseCache
from connectors.whatsapp import metrics
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.chat import ContextStore
from connectors.whatsapp.outbox import Outbox
from connectors.whatsapp.redis_pool import shared_redis
from connectors.whatsapp.registry import Registry
from streams.app import app, settings, whatsapp_events_raw_topic
from streams.conversations.conversation import Conversation, latest_inbound
from streams.conversations.dispatcher import DispatcherClient, internal_api_key
from streams.conversations.llm import Interpreter
from streams.notify.agents import notifier

log = logging.getLogger(__name__)

BATCH_SIZE = 200
BATCH_WITHIN_S = 0.05
outbox = Outbox(settings)
_conversation: Conversation | None = None


async def _no_state(driver_id: str) -> None:
    return None


def conversation() -> Conversation:
    """Return the worker's Conversation, built on first use (its clients bind to the running loop)."""
    global _conversation
    if _conversation is None:
        key = internal_api_key(settings.api_keys)
        base = settings.dispatcher_api_url or f"{tls.scheme(settings)}://127.0.0.1:{settings.web_port}"
        if key is None:
            log.warning("no WHATSUP_API_KEYS key has the internal role: drivers' orders cannot be read")
        http = httpx.AsyncClient(verify=tls.client_verify(settings))
        reader = DispatcherClient(base, key, http) if key else _no_state
        _conversation = Conversation(
            registry=Registry(
                shared_redis(settings.redis_url), settings.phone_hash_key or "", settings.topic_prefix
            ),
            read_state=reader,
            catalogue=load_catalogue(),
            topic_prefix=settings.topic_prefix,
            utc_offset_h=settings.display_utc_offset_h,
            interpreter=interpreter(),
            llm_concurrency=settings.llm_concurrency,
            contexts=ContextStore(
                shared_redis(settings.redis_url),
                settings.topic_prefix,
                int(settings.conversation_context_ttl_s),
            ),
        )
    return _conversation


def interpreter() -> Interpreter:
    """The rules, and the language model when WHATSUP_CONVERSATION_LLM_ENABLED is on and it has a key."""
    s = settings
    if not s.conversation_llm_enabled:
        return Interpreter(grades=s.guardrail_grades)
    if not s.llm_api_key:
        log.warning("WHATSUP_CONVERSATION_LLM_ENABLED is on but WHATSUP_LLM_API_KEY is unset: rules only")
        return Interpreter(grades=s.guardrail_grades)
    redis = shared_redis(s.redis_url)
    http = httpx.AsyncClient(timeout=httpx.Timeout(s.llm_timeout_s), verify=tls.client_verify(s))
    model = ChatClient(
        http,
        s.llm_base_url,
        s.llm_api_key,
        s.llm_model,
        timeout_s=s.llm_timeout_s,
        max_attempts=s.llm_max_attempts,
    )
    log.info(
        "conversation: the language model %s at %s reads what the rules do not", s.llm_model, s.llm_base_url
    )
    return Interpreter(
        model=model,
        cache=ResponseCache(redis, s.topic_prefix, s.llm_model, s.llm_cache_ttl_s),
        budget=Budget(redis, s.topic_prefix, s.llm_budget_per_driver, s.llm_budget_global),
        fail_mode=s.llm_fail_mode,
        grades=s.guardrail_grades,
    )


@app.agent(whatsapp_events_raw_topic, concurrency=1)
async def converse_with_drivers(stream: faust.StreamT[bytes]) -> None:
    """Answer each driver message and turn quick replies and locations into pipeline records.

    A record that cannot be handled is counted and skipped; when Redis or Kafka fail the worker stops (the
    batch is then replayed, and every output id is derived from its source record).
    """
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
        if not settings.phone_hash_key:
            metrics.CONVERSATION_ERRORS.labels("no_phone_hash_key").inc(len(events))
            continue
        values = [event.value for event in events]
        # A RedisError escapes: with the registry unreachable, stopping beats skipping every message.
        handled = await conversation().take(values)
        # One acknowledged delivery per batch: the batch's offsets are committed only after it, and the
        # chat contexts are kept only after it too (a replay must see the context the batch saw).
        await outbox.deliver(handled.records)
        await conversation().remember(handled)
        await notifier().store.touch_windows(latest_inbound(values))
