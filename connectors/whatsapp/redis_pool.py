"""One async Redis client per process and URL, created on first use (the worker has a single event loop)."""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

MAX_CONNECTIONS = 32
_clients: dict[str, Any] = {}


def shared_redis(url: str) -> Any:
    """Return this process's async Redis client for ``url``."""
    client = _clients.get(url)
    if client is None:
        # A blocking pool: under a burst, requests wait briefly for a connection instead of failing
        # (redis-py's default pool raises once its 100 connections are in use).
        pool = aioredis.BlockingConnectionPool.from_url(
            url, max_connections=MAX_CONNECTIONS, timeout=5, socket_timeout=5, socket_connect_timeout=5
        )
        client = _clients[url] = aioredis.Redis(connection_pool=pool)
    return client


async def close_all() -> None:
    """Close every client (worker shutdown)."""
    while _clients:
        _, client = _clients.popitem()
        await client.aclose()
