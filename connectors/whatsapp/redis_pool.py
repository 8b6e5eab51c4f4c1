"""One async Redis client per process and URL, created on first use (the worker has a single event loop)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

_clients: dict[str, Any] = {}


def shared_redis(url: str) -> Any:
    """Return this process's async Redis client for ``url``."""
    client = _clients.get(url)
    if client is None:
        client = _clients[url] = aioredis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return client


async def close_all() -> None:
    """Close every client (worker shutdown)."""
    while _clients:
        _, client = _clients.popitem()
        await client.aclose()
