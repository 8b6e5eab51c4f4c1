"""Helpers for tests against the local sandboxes: run them in-process, receive their callbacks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.sandbox.meta import MetaSandboxConfig
from connectors.sandbox.run import Sandboxes, running_sandboxes
from connectors.sandbox.twilio import TwilioSandboxConfig
from connectors.whatsapp.outbound import Outbound

TOKEN = "sandbox-token-" + "x" * 20
NUMBER_ID = "109876543210"
APP_SECRET = "app-secret-" + "y" * 24
SID = "AC" + "1" * 32
AUTH = "twilio-auth-" + "z" * 20


@dataclass
class Received:
    """Callbacks a test receiver got: raw body and headers, in arrival order."""

    posts: list[tuple[bytes, dict[str, str], str]] = field(default_factory=list)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def callback_receiver(refuse_first: int = 0) -> AsyncIterator[tuple[str, Received]]:
    """Serve a webhook receiver on a free port, answering 503 to its first ``refuse_first`` posts; yield its
    base URL and what it accepted."""
    received = Received()
    refused = [0]

    async def hook(request: web.Request) -> web.Response:
        body = await request.read()
        if refused[0] < refuse_first:
            refused[0] += 1
            return web.Response(status=503, text="busy")
        received.posts.append((body, dict(request.headers), str(request.url)))
        received.arrived.set()
        return web.Response(text="ok")

    app = web.Application()
    app.router.add_post("/{tail:.*}", hook)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", received
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def sandboxes(callback_url: str | None = None, rate_per_s: float = 80.0) -> AsyncIterator[Sandboxes]:
    """Run both sandboxes with the test credentials."""
    meta = MetaSandboxConfig(TOKEN, NUMBER_ID, APP_SECRET, callback_url, rate_per_s=rate_per_s)
    async with running_sandboxes(meta, TwilioSandboxConfig(SID, AUTH, rate_per_s=rate_per_s)) as boxes:
        yield boxes


def message(key: str = "k1", to: str = "+5511987654321", **fields: Any) -> Outbound:
    """Return an Outbound with sensible defaults."""
    record: dict[str, Any] = {
        "message_key": key,
        "to": to,
        "to_hash": "h" + to[-4:],
        "text": "Your order is 5 minutes away",
        "reason": "eta_update",
        **fields,
    }
    return Outbound.from_record(record, "whatsup_update")


async def wait_for(condition: Any, timeout_s: float = 5.0) -> None:
    """Poll ``condition()`` until true or fail after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)
