"""``whatsup registry load``: a registry file into Redis.

Kept apart from :mod:`connectors.whatsapp.registry`, whose parsing and lookups take their Redis
client as a parameter and so stay free of any I/O library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from connectors.whatsapp.registry import Registry, load_file


async def load_registry_file(settings: Any, path: Path) -> tuple[int, int]:
    """Parse ``path`` and upsert it into the Redis of ``settings``; return (drivers, customers)."""
    entries = load_file(path)  # parse everything first: a bad row loads nothing
    client = aioredis.from_url(settings.redis_url)
    try:
        return await Registry(client, settings.phone_hash_key, settings.topic_prefix).load(entries)
    finally:
        await client.aclose()
