"""Processes for the sender's integration tests: the sandboxes and the sender, as production runs them."""

from __future__ import annotations

import contextlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from aiohttp import web
from confluent_kafka import Producer

from base import topics
from base.kafka import client_config, make_producer
from base.settings import Settings
from connectors.sandbox.common import meta_signature
from connectors.sandbox.run import serve_in_thread
from connectors.whatsapp.normalize import normalize_meta
from schemas.codecs import codec
from tests.integration.stack import WorkerProcess, free_port
from tests.unit.sandbox_helpers import APP_SECRET, NUMBER_ID, TOKEN


class ServiceProcess(WorkerProcess):
    """A ``whatsup`` process whose health answers on the port named by ``port_var``."""

    def __init__(self, env: dict[str, str], log_path: Path, command: str, port_var: str) -> None:
        super().__init__(env, log_path, (command,))
        self.port_var = port_var

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env[self.port_var]}"


def sender_env(stack_env: dict[str, str], **extra: str) -> dict[str, str]:
    """The test's environment plus sandbox credentials and ports shared by the sandbox and the sender."""
    meta_port = free_port()
    return {
        **stack_env,
        "WHATSUP_WHATSAPP_TOKEN": TOKEN,
        "WHATSUP_WHATSAPP_PHONE_NUMBER_ID": NUMBER_ID,
        "WHATSUP_WHATSAPP_APP_SECRET": APP_SECRET,
        "WHATSUP_WHATSAPP_API_URL": f"http://127.0.0.1:{meta_port}",
        "WHATSUP_SANDBOX_META_PORT": str(meta_port),
        "WHATSUP_SANDBOX_TWILIO_PORT": str(free_port()),
        "WHATSUP_SANDBOX_PAGERDUTY_PORT": str(free_port()),
        # Nobody listens there: callbacks fail and are counted, as when the worker is down.
        "WHATSUP_SANDBOX_CALLBACK_URL": f"http://127.0.0.1:{free_port()}/webhooks/whatsapp",
        "WHATSUP_SENDER_METRICS_PORT": str(free_port()),
        "WHATSUP_LOG_LEVEL": "WARNING",
        **extra,
    }


def produce_outbound(settings: Settings, messages: list[dict[str, Any]]) -> None:
    """Put OutboundMessages on whatsapp.outbound, keyed by recipient hash."""
    producer = Producer(client_config(settings, acks="all", partitioner="murmur2_random"))
    topic = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
    encode = codec("OutboundMessage").encode
    for message in messages:
        producer.produce(topic, encode(message), message["to_hash"].encode())
    assert producer.flush(30) == 0


def outbound(key: str, to: str, **fields: Any) -> dict[str, Any]:
    """Return an OutboundMessage record."""
    return {
        "message_key": key,
        "to": to,
        "to_hash": f"hash-{to[-6:]}",
        "text": f"Update for {key}",
        "reason": "eta_update",
        "created_at": int(time.time() * 1000),
        **fields,
    }


def sandbox_messages(sandbox: ServiceProcess) -> list[dict[str, Any]]:
    """Return every message the Meta sandbox accepted."""
    return list(httpx.get(f"{sandbox.url}/_sandbox/messages", timeout=10).json()["messages"])


def wait_for_sandbox(sandbox: ServiceProcess, at_least: int, timeout_s: float = 60) -> int:
    """Wait until the sandbox has accepted ``at_least`` messages; return how many it has."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        count = int(httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["accepted"])
        if count >= at_least:
            return count
        time.sleep(0.1)
    raise AssertionError(f"the sandbox accepted fewer than {at_least} messages within {timeout_s}s")


@contextlib.contextmanager
def status_webhook(settings: Settings, app_secret: str) -> Iterator[str]:
    """Stand in for the worker's webhook: signed Meta status callbacks become MessageStatus records.

    Yields the callback URL. Like the real webhook, it refuses a bad signature and takes the message key
    from ``biz_opaque_callback_data``.
    """
    producer = make_producer(settings, **{"linger.ms": 1})
    topic, encode = (
        topics.qualified(topics.WHATSAPP_STATUS, settings.topic_prefix),
        codec("MessageStatus").encode,
    )

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if not hmac.compare_digest(
            request.headers.get("X-Hub-Signature-256", ""), meta_signature(app_secret, body)
        ):
            return web.Response(status=401)
        # The webhook's own normalization: error codes (a late 131047) reach the record as they would.
        for update in normalize_meta(body, "test-phone-key", int(time.time() * 1000)).statuses:
            producer.produce(topic, encode(update.status), update.status["message_key"].encode())
        producer.flush(10)
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/webhooks/whatsapp", hook)
    with serve_in_thread(app) as url:
        yield f"{url}/webhooks/whatsapp"
