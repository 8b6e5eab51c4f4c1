"""One way to reach ClickHouse, through clickhouse-connect: embedded chDB (``chdb://``) or a server (http/s).

chDB runs the real ClickHouse engine inside the process and allows one engine (one data directory) per
process, locked on disk: the ``whatsup sink`` process owns it, and everyone else reads through that
process's query endpoint (``sinks.query``). Its client is synchronous only, so async callers run it in a
thread.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import clickhouse_connect
from clickhouse_connect.driver.client import Client

from base.settings import Settings


def is_embedded(settings: Settings) -> bool:
    """Tell whether the ClickHouse URL names an embedded chDB directory rather than a server."""
    return urlparse(settings.clickhouse_url).scheme == "chdb"


def embedded_path(settings: Settings) -> Path:
    """Return the chDB data directory of a ``chdb:///path`` URL."""
    parsed = urlparse(settings.clickhouse_url)
    return Path(parsed.netloc + parsed.path)


def make_client(settings: Settings, *, readonly: bool = False, **kwargs: Any) -> Client:
    """Open a clickhouse-connect client on the configured engine; ``readonly`` refuses any write."""
    client_settings: dict[str, Any] = {"readonly": 1} if readonly else {}
    if is_embedded(settings):
        path = embedded_path(settings)
        path.mkdir(parents=True, exist_ok=True)
        return clickhouse_connect.get_client(dsn=f"chdb://{path}", settings=client_settings, **kwargs)
    return clickhouse_connect.get_client(dsn=settings.clickhouse_url, settings=client_settings, **kwargs)
