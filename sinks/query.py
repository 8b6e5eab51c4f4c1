"""Read-only SQL for the rest of the pipeline (``whatsup query``, the dispatcher API's history).

With the embedded engine, the sink process owns the database: queries go to its endpoint
``POST http://127.0.0.1:{WHATSUP_SINK_PORT}/query``. With a ClickHouse server, they go straight to it with
``readonly=1``. Either way the answer is a list of dicts with JSON-friendly values (timestamps as ISO-8601).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import decimal
import uuid
from collections.abc import Mapping
from typing import Any

import httpx

from base import tls
from base.exceptions import StackError, WhatsUpError
from base.settings import Settings
from sinks.engine import is_embedded, make_client


class QueryError(WhatsUpError):
    """ClickHouse refused a query (bad SQL, a write on the read-only path, an unknown table)."""


def jsonable(value: Any) -> Any:
    """Return ``value`` as something json.dumps can write: ISO-8601 times, lists for tuples."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    return value


def rows_of(result: Any) -> list[dict[str, Any]]:
    """Return a clickhouse-connect query result as JSON-friendly dicts."""
    return [{k: jsonable(v) for k, v in row.items()} for row in result.named_results()]


def endpoint(settings: Settings) -> str:
    """Return the sink process's query URL."""
    return f"{tls.scheme(settings)}://127.0.0.1:{settings.sink_port}/query"


def _answer(response: httpx.Response) -> list[dict[str, Any]]:
    if response.status_code == 400:
        body = response.json()
        raise QueryError(body.get("message") or body.get("error") or response.text)
    response.raise_for_status()
    return list(response.json()["rows"])


def run_query(
    settings: Settings, sql: str, params: dict[str, Any] | None = None, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Run read-only ``sql`` (``{name:Type}`` placeholders filled from ``params``); return its rows."""
    if not is_embedded(settings):
        client = make_client(settings, readonly=True)
        try:
            return rows_of(client.query(sql, parameters=params or {}))
        except Exception as exc:
            raise QueryError(str(exc).split("\n")[0]) from exc
        finally:
            client.close()
    try:
        response = httpx.post(
            endpoint(settings),
            json={"sql": sql, "params": params or {}},
            timeout=timeout_s,
            verify=tls.client_verify(settings),
        )
    except httpx.HTTPError as exc:
        raise StackError(f"the sink process does not answer on {endpoint(settings)} ({exc})") from exc
    return _answer(response)


async def run_query_async(
    settings: Settings, sql: str, params: dict[str, Any] | None = None, timeout_s: float = 60.0
) -> list[dict[str, Any]]:
    """Run read-only ``sql`` without blocking the event loop; return its rows."""
    if not is_embedded(settings):
        return await asyncio.to_thread(run_query, settings, sql, params, timeout_s)
    try:
        async with httpx.AsyncClient(timeout=timeout_s, verify=tls.client_verify(settings)) as client:
            response = await client.post(endpoint(settings), json={"sql": sql, "params": params or {}})
    except httpx.HTTPError as exc:
        raise StackError(f"the sink process does not answer on {endpoint(settings)} ({exc})") from exc
    return _answer(response)
