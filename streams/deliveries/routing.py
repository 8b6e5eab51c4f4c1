"""An external routing provider for ETAs (OSRM's route service over httpx), off unless configured.

A route gives the road distance and a travel time from the road graph; when the provider is off, slow,
rate-limited or finds no route, the ETA falls back to the blended estimate of ``eta.estimate_eta``. The
caller learns why through the fallback reason, so it can count fallbacks.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

import httpx

from base.exceptions import WhatsUpError
from streams.deliveries.eta import EtaConfig, EtaEstimate, EtaMethod, estimate_eta, estimate_from_route


class RoutingError(WhatsUpError):
    """The provider gave no route; ``retriable`` when asking again later may succeed, ``code`` says why."""

    def __init__(self, code: str, message: str, *, retriable: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.retriable = retriable


@dataclass(frozen=True)
class Route:
    """A provider's answer: road distance in metres and travel time in seconds."""

    distance_m: float
    duration_s: float


class RoutingProvider(Protocol):
    """Anything that can route a driver to a drop-off."""

    async def route(self, lat: float, lon: float, dropoff_lat: float, dropoff_lon: float) -> Route:
        """Return the route, or raise ``RoutingError``."""
        ...


class OsrmRouter:
    """OSRM's ``/route/v1/{profile}`` service; the httpx client is a parameter (tests use a local server)."""

    def __init__(self, client: httpx.AsyncClient, base_url: str, profile: str = "driving") -> None:
        self.client = client
        self.base_url = base_url.rstrip("/")
        self.profile = profile

    async def start(self) -> None:
        """Nothing to open: the client's pool connects on first use."""

    async def stop(self) -> None:
        """Close the client's connections."""
        await self.client.aclose()

    async def route(self, lat: float, lon: float, dropoff_lat: float, dropoff_lon: float) -> Route:
        """Ask for the fastest route; raise ``RoutingError`` for OSRM error codes and HTTP failures."""
        # OSRM takes longitude first.
        url = (
            f"{self.base_url}/route/v1/{self.profile}/{lon:.6f},{lat:.6f};{dropoff_lon:.6f},{dropoff_lat:.6f}"
        )
        try:
            response = await self.client.get(url, params={"overview": "false", "steps": "false"})
        except httpx.TimeoutException as exc:
            raise RoutingError("Timeout", str(exc) or "no answer in time", retriable=True) from exc
        except httpx.HTTPError as exc:
            raise RoutingError("Unreachable", str(exc), retriable=True) from exc
        return _parse(response)


def _parse(response: httpx.Response) -> Route:
    if response.status_code == 429 or response.status_code >= 500:
        raise RoutingError(f"HTTP{response.status_code}", response.text[:200], retriable=True)
    try:
        body: Any = response.json()
    except ValueError:
        raise RoutingError("BadResponse", f"HTTP {response.status_code}, not JSON") from None
    code = body.get("code") if isinstance(body, dict) else None
    if code != "Ok":
        # NoRoute, NoSegment, InvalidQuery, TooBig ...: asking again will not help.
        raise RoutingError(str(code or f"HTTP{response.status_code}"), str(body.get("message", ""))[:200])
    try:
        best = body["routes"][0]
        return Route(float(best["distance"]), float(best["duration"]))
    except (KeyError, IndexError, TypeError, ValueError):
        raise RoutingError("BadResponse", "Ok without a usable route") from None


async def routed_eta(
    provider: RoutingProvider | None,
    lat: float,
    lon: float,
    dropoff_lat: float,
    dropoff_lon: float,
    now_ms: int,
    recent_speed_mps: float | None,
    cell_speed_mps: float | None,
    config: EtaConfig,
    *,
    timeout_s: float = 2.0,
    recent_evidence_s: float | None = None,
) -> tuple[EtaEstimate, str | None]:
    """Estimate through the provider when there is one; else, or on failure, the blended estimate and why."""
    blended = estimate_eta(
        lat, lon, dropoff_lat, dropoff_lon, now_ms, recent_speed_mps, cell_speed_mps, config,
        recent_evidence_s=recent_evidence_s,
    )  # fmt: skip
    if provider is None or blended.method == EtaMethod.ARRIVED:
        return blended, None
    try:
        route = await asyncio.wait_for(provider.route(lat, lon, dropoff_lat, dropoff_lon), timeout_s)
    except TimeoutError:
        return blended, "Timeout"
    except RoutingError as exc:
        return blended, exc.code
    return estimate_from_route(route.duration_s, route.distance_m, now_ms, config), None


def make_router(routing_url: str | None, timeout_s: float) -> OsrmRouter | None:
    """Build the OSRM router the settings ask for, or None when routing is off."""
    if not routing_url:
        return None
    return OsrmRouter(httpx.AsyncClient(timeout=timeout_s), routing_url)
