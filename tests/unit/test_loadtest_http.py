"""The benchmark's lean HTTP/1.1 load generator, against a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from loadtest.http import LoadResult, Pool, build_post, open_loop


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


Handler = Callable[[web.Request], Awaitable[web.Response]]


def test_build_post_carries_body_length_and_headers() -> None:
    request = build_post("http://h:1/webhooks/x?a=1", "olá".encode(), {"X-Sig": "s"})
    head, body = request.split(b"\r\n\r\n", 1)
    assert head.startswith(b"POST /webhooks/x?a=1 HTTP/1.1\r\nHost: h:1\r\n")
    assert b"Content-Length: 4" in head and b"X-Sig: s" in head
    assert body == "olá".encode()


def test_open_loop_delivers_every_request_and_counts_non_200() -> None:
    seen: list[tuple[bytes, str | None]] = []
    peers: set[object] = set()

    async def handler(request: web.Request) -> web.Response:
        seen.append((await request.read(), request.headers.get("X-Sig")))
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        await asyncio.sleep(0.005)
        return web.json_response({"ok": True}, status=400 if request.path.endswith("bad") else 200)

    async def run() -> tuple[LoadResult, LoadResult]:
        runner, base = await _serve(handler)
        try:
            good = [build_post(f"{base}/ok", f"body-{i}".encode(), {"X-Sig": str(i)}) for i in range(60)]
            bad = [build_post(f"{base}/bad", b"x", {}) for _ in range(3)]
            first = await open_loop(base, good, 400.0)
            second = await open_loop(base, bad, 100.0)
            return first, second
        finally:
            await runner.cleanup()

    first, second = asyncio.run(run())
    assert len(first.latencies) == 60 and first.errors == 0
    assert sorted(body for body, _ in seen[:60]) == sorted(f"body-{i}".encode() for i in range(60))
    assert all(lat >= 0.005 for lat in first.latencies)
    # Keep-alive: far fewer connections than requests.
    assert len(peers) < 60
    assert second.errors == 3
    # The schedule is kept: 60 requests at 400/s take about 0.15 s, not 60 sequential round trips.
    assert first.elapsed_s < 2.0


def test_a_pool_recycles_connections_after_so_many_requests_and_caps_those_in_flight() -> None:
    peers: list[object] = []
    in_flight, most = 0, 0

    async def handler(request: web.Request) -> web.Response:
        nonlocal in_flight, most
        peers.append(request.transport.get_extra_info("peername") if request.transport else None)
        in_flight += 1
        most = max(most, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return web.json_response({}, status=202)

    async def run() -> list[int]:
        runner, base = await _serve(handler)
        try:
            pool = Pool("127.0.0.1", int(base.rsplit(":", 1)[1]), limit=2, reuse=3)
            request = build_post(f"{base}/x", b"{}", {})
            statuses = await asyncio.gather(*(pool.post(request) for _ in range(12)))
            await pool.close()
            return list(statuses)
        finally:
            await runner.cleanup()

    assert asyncio.run(run()) == [202] * 12
    assert most <= 2, "no more requests in flight than the limit"
    # Three requests per connection: twelve requests need at least four connections, none serves four.
    assert len(set(peers)) >= 4
    assert max(peers.count(peer) for peer in set(peers)) <= 3
