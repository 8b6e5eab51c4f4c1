"""The conversation's view of a driver through the dispatcher API, on a real aiohttp server."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
from aiohttp import web
from aiohttp.test_utils import TestServer

from streams.conversations.dispatcher import DispatcherClient


async def _serve(answers: list[tuple[int, dict[str, Any]]]) -> tuple[TestServer, list[str]]:
    keys: list[str] = []

    async def driver(request: web.Request) -> web.Response:
        keys.append(request.headers.get("X-API-Key", ""))
        status, body = answers.pop(0) if len(answers) > 1 else answers[0]
        headers = {"Retry-After": "0.2"} if status == 503 else {}
        return web.json_response(body, status=status, headers=headers)

    app = web.Application()
    app.router.add_get("/v1/drivers/{id}", driver)
    server = TestServer(app)
    await server.start_server()
    return server, keys


def test_a_recovering_worker_is_asked_again_and_an_unknown_driver_has_nothing() -> None:
    async def main() -> None:
        state = {"driver_id": "d1", "active_deliveries": [{"delivery_id": "D-1"}], "open_alerts": []}
        server, keys = await _serve([(503, {"error": "state_recovering"}), (503, {}), (200, state)])
        async with httpx.AsyncClient() as http:
            client = DispatcherClient(str(server.make_url("")), "internal-key", http)
            assert await client("d1") == state
            assert keys == ["internal-key"] * 3
        await server.close()
        server, _ = await _serve([(404, {"error": "not_found"})])
        async with httpx.AsyncClient() as http:
            empty = await DispatcherClient(str(server.make_url("")), "k", http)("d9")
        assert empty == {"driver_id": "d9", "active_deliveries": [], "open_alerts": [], "last_fix": None}
        await server.close()

    asyncio.run(main())


def test_a_worker_that_stays_recovering_is_given_up_on_within_the_bound() -> None:
    async def main() -> None:
        server, keys = await _serve([(503, {"error": "state_recovering"})])
        async with httpx.AsyncClient() as http:
            client = DispatcherClient(str(server.make_url("")), "k", http)
            client.RECOVERY_WAIT_S = 1.0
            started = time.monotonic()
            assert await client("d1") is None
            assert time.monotonic() - started < 3.0 and len(keys) >= 3
        await server.close()

    asyncio.run(main())
