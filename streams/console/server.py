"""``whatsup console``: the dispatcher console's process (aiohttp on uvloop), on ``WHATSUP_CONSOLE_PORT``.

It serves the page (``/console``, sign-in at ``/console/login``), the fleet-wide API behind it, the push
channel, ``/health`` and ``/metrics``. Any number may run: each reads the whole fleet from Kafka, and the
sessions live in Redis, so a load balancer may send a dispatcher's requests to any of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from base import metrics, tls
from base.logs import configure_logging
from base.settings import Settings
from connectors.whatsapp.producer import AsyncProducer
from connectors.whatsapp.registry import Registry
from sinks.query import run_query_async
from streams.console import metrics as console_metrics
from streams.console.accounts import Accounts
from streams.console.api import ConsoleApi
from streams.console.feed import ConsoleFeed
from streams.ingest.counted import reasoned_errors

logger = logging.getLogger(__name__)
ROLE = "console"
STATIC = Path(__file__).parent / "static"
FLEET_PUSH_S = 2.0


def build_app(api: ConsoleApi) -> web.Application:
    """Wire the page, the API, the push channel, /health and /metrics into one aiohttp application."""
    app = web.Application(client_max_size=64 * 1024, middlewares=[reasoned_errors])
    reads = [
        ("/v1/drivers", api.drivers, True),
        ("/v1/drivers/{driver_id}", api.driver, True),
        ("/v1/drivers/{driver_id}/trail", api.trail, True),
        ("/v1/alerts", api.alerts, True),
        ("/v1/deliveries", api.deliveries, False),
        ("/v1/cells/hot", api.hot_cells, False),
        ("/v1/summary", api.summary, False),
    ]
    for route, handler, locates in reads:
        app.router.add_get(route, api.audited(route, locates, handler))
    acts = [
        ("/v1/alerts/{alert_id}/{action}", api.act),
        ("/v1/drivers/{driver_id}/message", api.message),
    ]
    for route, handler in acts:
        app.router.add_post(route, api.audited(route, False, handler))
    app.router.add_get("/v1/stream", api.stream)
    app.router.add_post("/auth/login", api.login)
    app.router.add_post("/auth/logout", api.logout)
    app.router.add_get("/auth/session", api.whoami)

    async def page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "console.html")

    async def login_page(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "login.html")

    async def health(request: web.Request) -> web.Response:
        ready = api.feed.ready.is_set()
        body = {"status": "ok" if ready else "loading", "drivers": len(api.feed.fleet.rows)}
        return web.json_response(body, status=200 if ready else 503)

    async def scrape(request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app.router.add_get("/console", page)
    app.router.add_get("/console/login", login_page)
    app.router.add_static("/console/static", STATIC)
    app.router.add_get("/health", health)
    app.router.add_get("/metrics", scrape)
    return app


async def _push_fleet(feed: ConsoleFeed) -> None:
    while True:
        await asyncio.sleep(FLEET_PUSH_S)
        feed.tell_fleet()
        for status, count in feed.fleet.counts().items():
            console_metrics.DRIVERS.labels(status).set(count)
        console_metrics.INCIDENTS_OPEN.set(feed.incidents.open_count())


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Run the console until ``stop`` is set."""
    producer = AsyncProducer(settings)
    producer.start()
    client = aioredis.from_url(settings.redis_url)
    feed = ConsoleFeed(settings)
    accounts = Accounts(
        client, settings.topic_prefix, settings.console_session_idle_s, settings.console_login_failures
    )
    api = ConsoleApi(settings, feed, accounts, producer, run_query_async)
    if settings.phone_hash_key:
        api.registry = Registry(client, settings.phone_hash_key, settings.topic_prefix)
    tasks = [asyncio.create_task(feed.run()), asyncio.create_task(_push_fleet(feed))]
    runner = web.AppRunner(build_app(api), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    context = tls.server_context(settings)
    await web.TCPSite(runner, settings.web_host, settings.console_port, ssl_context=context).start()
    logger.info(
        "console on %s://%s:%d/console", tls.scheme(settings), settings.web_host, settings.console_port
    )
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await runner.cleanup()
        await client.aclose()
        producer.stop()


def run_console(settings: Settings) -> int:
    """Run ``whatsup console`` until SIGTERM or SIGINT; return the exit status."""
    import uvloop

    configure_logging(settings)
    metrics.mark_up(ROLE)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await serve(settings, stop)

    uvloop.run(main())
    return 0
