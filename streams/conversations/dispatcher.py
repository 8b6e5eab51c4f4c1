"""Reading a driver's live state through the dispatcher API (``GET /v1/drivers/{id}``) with an internal key.

The conversation agent codes against ``DriverStateReader``, any async function from driver id to the API's
JSON (``None``: the state could not be read). Tests pass a plain function; the worker passes
``DispatcherClient``, which asks its own web server, and Faust routes the request to the worker that owns
the driver's partition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx

DriverStateReader = Callable[[str], Awaitable[dict[str, Any] | None]]


def internal_api_key(api_keys: Mapping[str, frozenset[str]]) -> str | None:
    """Return a configured key with the ``internal`` role (service to service), if any."""
    return next((key for key, roles in sorted(api_keys.items()) if "internal" in roles), None)


def _retry_after(answer: httpx.Response) -> float:
    try:
        return max(0.1, min(float(answer.headers.get("Retry-After", "1")), 2.0))
    except ValueError:
        return 1.0


class DispatcherClient:
    """The dispatcher API's driver view; ``client`` is an ``httpx.AsyncClient`` the caller owns."""

    RECOVERY_WAIT_S = 4.0

    def __init__(self, base_url: str, api_key: str, client: httpx.AsyncClient) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.client = client

    async def __call__(self, driver_id: str) -> dict[str, Any] | None:
        """Return the driver's state; a driver the pipeline has not seen has no deliveries and no alerts.

        A worker recovering its tables answers 503 with Retry-After: asked again, a few times within
        ``RECOVERY_WAIT_S``, so a driver who writes just after a restart is answered from the state, not told
        it is unavailable.
        """
        waited = 0.0
        while True:
            try:
                answer = await self.client.get(
                    f"{self.base_url}/v1/drivers/{driver_id}",
                    headers={"X-API-Key": self.api_key},
                    timeout=5.0,
                )
            except httpx.HTTPError:
                return None
            if answer.status_code != 503 or waited >= self.RECOVERY_WAIT_S:
                break
            pause = min(_retry_after(answer), self.RECOVERY_WAIT_S - waited)
            await asyncio.sleep(pause)
            waited += pause
        if answer.status_code == 404:
            return {"driver_id": driver_id, "active_deliveries": [], "open_alerts": [], "last_fix": None}
        if answer.status_code != 200:
            return None
        try:
            body = answer.json()
        except ValueError:
            return None
        return body if isinstance(body, dict) else None
