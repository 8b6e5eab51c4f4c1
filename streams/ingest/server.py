"""``whatsup ingest``: the intake routes in a stateless process of their own (aiohttp on uvloop).

Any number of these processes listen on ``WHATSUP_INGEST_PORT`` together (SO_REUSEPORT: the kernel spreads
connections between them) or sit behind a load balancer; none keeps state a restart would lose, and none
consumes from Kafka, so a worker's rebalance or restart never stalls an answer. ``/health`` answers 200
while the process runs; ``/metrics`` serves this process's registry (with several processes on one port,
scrape each one's own address or container).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from base import metrics, tls
from base.logs import configure_logging
from base.settings import Settings
from connectors.whatsapp.producer import AsyncProducer
from connectors.whatsapp.redis_pool import close_all
from streams.ingest import events, pings, tracking, webhooks
from streams.ingest.counted import answered, answered_now, reasoned_errors
from streams.ingest.reply import Reply

logger = logging.getLogger(__name__)
ROLE = "ingest"


def respond(reply: Reply) -> web.Response:
    """Turn a handler's reply into an aiohttp response."""
    if isinstance(reply.body, str):
        return web.Response(text=reply.body, status=reply.status, headers=reply.headers)
    return web.json_response(reply.body, status=reply.status, headers=reply.headers)


def build_app(settings: Settings, producer: AsyncProducer) -> web.Application:
    """Wire the intake handlers, /health and /metrics into one aiohttp application."""
    ping_intake = pings.PingIntake(settings, producer.send_all)
    event_intake = events.EventIntake(settings, producer.send_all)
    hooks = webhooks.Webhooks(settings, producer.send_all)
    links = tracking.Tracking(settings)
    started = time.time()

    async def post_pings(request: web.Request) -> web.Response:
        return respond(await answered(pings.ROUTE, ping_intake.handle(request.headers, request.read)))

    async def post_events(request: web.Request) -> web.Response:
        return respond(await answered(events.ROUTE, event_intake.handle(request.headers, request.read)))

    async def meta_challenge(request: web.Request) -> web.Response:
        return respond(answered_now(webhooks.META_ROUTE, hooks.challenge(request.query)))

    async def meta_notification(request: web.Request) -> web.Response:
        body, signature = await request.read(), request.headers.get("X-Hub-Signature-256")
        return respond(await answered(webhooks.META_ROUTE, hooks.meta(body, signature)))

    async def twilio(request: web.Request) -> web.Response:
        body, signature = await request.read(), request.headers.get("X-Twilio-Signature")
        url = str(request.url)
        return respond(
            await answered(webhooks.TWILIO_ROUTE, hooks.twilio(url, request.query_string, body, signature))
        )

    async def track(request: web.Request) -> web.Response:
        work = links.answer(
            request.match_info["token"],
            request.headers.get("Accept", ""),
            request.headers.get("Accept-Language", ""),
            request.query.get("format") == "json",
        )
        reply = await answered(tracking.ROUTE, work)
        if isinstance(reply.body, str):  # the page
            headers = {k: v for k, v in reply.headers.items() if k != "Content-Type"}
            return web.Response(
                text=reply.body, status=reply.status, headers=headers, content_type="text/html"
            )
        return respond(reply)

    async def health(request: web.Request) -> web.Response:
        return web.json_response(
            {"status": "ok", "role": ROLE, "pid": os.getpid(), "up_s": round(time.time() - started, 1)}
        )

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), content_type=CONTENT_TYPE_LATEST.split(";")[0])

    app = web.Application(client_max_size=4 * 2**20, middlewares=[reasoned_errors])
    app.router.add_post(pings.ROUTE, post_pings)
    app.router.add_post(events.ROUTE, post_events)
    app.router.add_get(webhooks.META_ROUTE, meta_challenge)
    app.router.add_post(webhooks.META_ROUTE, meta_notification)
    app.router.add_post(webhooks.TWILIO_ROUTE, twilio)
    app.router.add_get(tracking.ROUTE, track)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", scrape)
    return app


async def serve(settings: Settings, stopping: Callable[[], Awaitable[object]]) -> None:
    """Serve until ``stopping`` returns, then stop taking requests and deliver what is queued."""
    producer = AsyncProducer(settings)
    producer.start()
    runner = web.AppRunner(build_app(settings, producer), access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(
        runner,
        settings.web_host,
        settings.ingest_port,
        reuse_port=True,
        backlog=1024,
        ssl_context=tls.server_context(settings),
    )
    await site.start()
    metrics.mark_up(ROLE)
    logger.info("ingest listening on %s:%d (pid %d)", settings.web_host, settings.ingest_port, os.getpid())
    try:
        await stopping()
    finally:
        # Stop listening first, let requests in flight finish (their records are acknowledged or refused).
        await runner.cleanup()
        await asyncio.to_thread(producer.stop)
        await close_all()


def run_ingest(settings: Settings) -> int:
    """Run one ingest process until SIGTERM or SIGINT."""
    import uvloop

    configure_logging(settings)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await serve(settings, stop.wait)

    uvloop.run(main())
    return 0
