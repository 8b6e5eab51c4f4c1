"""The OSRM routing provider against a local server answering like OSRM's /route/v1/driving, errors too."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from aiohttp import web

from streams.deliveries.eta import EtaConfig, EtaMethod
from streams.deliveries.routing import OsrmRouter, Route, RoutingError, make_router, routed_eta

CONFIG = EtaConfig()
NOW = 1_790_000_000_000
# Paulista to a drop-off 2.2 km away; an island off the coast that no road reaches; a point far at sea.
ORIGIN = (-23.5614, -46.6559)
DROPOFF = (-23.5430, -46.6450)
ISLAND = (-24.4858, -47.0000)
SEA = (-25.5, -44.0)


def _osrm_app(state: dict[str, Any]) -> web.Application:
    """Answer like osrm-routed: JSON with a ``code``, HTTP 400 for every code but Ok."""

    async def route(request: web.Request) -> web.Response:
        state["requests"].append(request.path_qs)
        if state.get("rate_limited"):
            return web.json_response({"message": "Too Many Requests"}, status=429)
        if state.get("delay_s"):
            await asyncio.sleep(state["delay_s"])
        try:
            points = [tuple(map(float, p.split(","))) for p in request.match_info["coords"].split(";")]
        except ValueError:
            return web.json_response({"code": "InvalidUrl", "message": "URL string malformed"}, status=400)
        (lon1, lat1), (lon2, lat2) = points
        if not (-90 <= lat2 <= 90 and -180 <= lon2 <= 180):
            return web.json_response({"code": "InvalidValue", "message": "Invalid coordinate"}, status=400)
        if (round(lat2, 4), round(lon2, 4)) == SEA:
            return web.json_response(
                {"code": "NoSegment", "message": "Could not find a matching segment for any coordinate."},
                status=400,
            )
        if (round(lat2, 4), round(lon2, 4)) == ISLAND:
            return web.json_response(
                {"code": "NoRoute", "message": "Impossible route between points"}, status=400
            )
        waypoint = {"hint": "", "distance": 3.2, "name": "Avenida Paulista", "location": [lon1, lat1]}
        return web.json_response(
            {
                "code": "Ok",
                "routes": [{"geometry": "", "legs": [], "weight_name": "routability", "weight": 410.2,
                            "duration": 410.2, "distance": 3051.7}],
                "waypoints": [waypoint, {**waypoint, "location": [lon2, lat2]}],
            }
        )  # fmt: skip

    app = web.Application()
    app.router.add_get("/route/v1/driving/{coords}", route)
    return app


@asynccontextmanager
async def osrm_server(state: dict[str, Any]) -> AsyncIterator[str]:
    """Run the fake OSRM on a free loopback port and yield its base URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    runner = web.AppRunner(_osrm_app(state))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def _with_router(state: dict[str, Any], call: Any, timeout_s: float = 2.0) -> Any:
    async with osrm_server(state) as url:
        router = OsrmRouter(httpx.AsyncClient(timeout=timeout_s), url)
        await router.start()
        try:
            return await call(router)
        finally:
            await router.stop()


def test_a_route_becomes_a_routed_estimate() -> None:
    state: dict[str, Any] = {"requests": []}

    async def call(router: OsrmRouter) -> Any:
        return await routed_eta(router, *ORIGIN, *DROPOFF, NOW, 6.0, 5.0, CONFIG)

    estimate, fallback = asyncio.run(_with_router(state, call))
    assert fallback is None
    assert (estimate.method, estimate.eta_ms, estimate.remaining_m) == (
        EtaMethod.ROUTING,
        NOW + 410_200,
        3051.7,
    )
    # Longitude first, as OSRM wants, and no geometry asked for.
    assert state["requests"] == [
        "/route/v1/driving/-46.655900,-23.561400;-46.645000,-23.543000?overview=false&steps=false"
    ]


@pytest.mark.parametrize(
    ("state", "dropoff", "code", "retriable"),
    [
        ({}, ISLAND, "NoRoute", False),
        ({}, SEA, "NoSegment", False),
        ({}, (95.0, 10.0), "InvalidValue", False),
        ({"rate_limited": True}, DROPOFF, "HTTP429", True),
    ],
)
def test_osrm_error_codes_raise_routing_errors(
    state: dict[str, Any], dropoff: tuple[float, float], code: str, retriable: bool
) -> None:
    state["requests"] = []

    async def call(router: OsrmRouter) -> Any:
        with pytest.raises(RoutingError) as caught:
            await router.route(*ORIGIN, *dropoff)
        return caught.value

    error = asyncio.run(_with_router(state, call))
    assert (error.code, error.retriable) == (code, retriable)


@pytest.mark.parametrize("dropoff", [ISLAND, SEA])
def test_no_route_falls_back_to_the_blended_estimate(dropoff: tuple[float, float]) -> None:
    async def call(router: OsrmRouter) -> Any:
        return await routed_eta(router, *ORIGIN, *dropoff, NOW, 6.0, 5.0, CONFIG)

    estimate, fallback = asyncio.run(_with_router({"requests": []}, call))
    assert fallback in ("NoRoute", "NoSegment")
    assert estimate.method == EtaMethod.BLENDED


def test_a_slow_provider_times_out_into_the_blended_estimate() -> None:
    async def call(router: OsrmRouter) -> Any:
        started = asyncio.get_running_loop().time()
        result = await routed_eta(router, *ORIGIN, *DROPOFF, NOW, 6.0, 5.0, CONFIG, timeout_s=0.2)
        return result, asyncio.get_running_loop().time() - started

    (estimate, fallback), took = asyncio.run(_with_router({"requests": [], "delay_s": 1.0}, call))
    assert (fallback, estimate.method) == ("Timeout", EtaMethod.BLENDED)
    assert took < 1.0


def test_the_client_timeout_is_a_retriable_routing_error() -> None:
    async def call(router: OsrmRouter) -> Any:
        with pytest.raises(RoutingError) as caught:
            await router.route(*ORIGIN, *DROPOFF)
        return caught.value

    error = asyncio.run(_with_router({"requests": [], "delay_s": 1.0}, call, timeout_s=0.1))
    assert (error.code, error.retriable) == ("Timeout", True)


def test_an_unreachable_provider_falls_back() -> None:
    async def run() -> Any:
        router = OsrmRouter(httpx.AsyncClient(timeout=0.5), "http://127.0.0.1:9")
        try:
            return await routed_eta(router, *ORIGIN, *DROPOFF, NOW, None, None, CONFIG)
        finally:
            await router.stop()

    estimate, fallback = asyncio.run(run())
    assert (fallback, estimate.method) == ("Unreachable", EtaMethod.DEFAULT)


def test_routing_is_off_by_default() -> None:
    assert make_router(None, 2.0) is None
    estimate, fallback = asyncio.run(routed_eta(None, *ORIGIN, *DROPOFF, NOW, 6.0, 5.0, CONFIG))
    assert (estimate.method, fallback) == (EtaMethod.BLENDED, None)
    router = make_router("http://osrm.internal:5000/", 2.0)
    assert isinstance(router, OsrmRouter) and router.base_url == "http://osrm.internal:5000"
    asyncio.run(router.stop())
    assert Route(1.0, 2.0).duration_s == 2.0
