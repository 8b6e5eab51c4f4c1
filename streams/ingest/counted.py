"""Every intake answer counted in ``whatsup_http_requests_total``, the unexpected failures (500) included.

Both web servers (``whatsup ingest`` and the worker's own routes) answer through ``answered``: a handler that
raises is logged and answered 500, and that 500 is counted like any other answer, so the error-rate alert
sees it. A body over the server's size limit, which aiohttp refuses while the handler reads it, is a 413
with its reason code.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any

from aiohttp import web
from prometheus_client import Counter

from base import metrics
from streams.ingest.reply import Reply, error

log = logging.getLogger(__name__)
_counters: dict[tuple[str, int], Counter] = {}


def count(route: str, status: int) -> None:
    """Count one answer of ``route``; the labelled child is looked up once per route and status."""
    child = _counters.get((route, status))
    if child is None:
        child = _counters[(route, status)] = metrics.HTTP_REQUESTS.labels(route, str(status))
    child.inc()


async def answered(route: str, work: Awaitable[Reply]) -> Reply:
    """Await a handler's reply and count it; an exception it raises becomes a counted 500."""
    try:
        reply = await work
    except web.HTTPRequestEntityTooLarge as exc:  # raised by aiohttp while the handler reads the body
        reply = error(413, "body_too_large", exc.text or "the body is over this server's size limit")
    except Exception:
        log.exception("the %s handler failed", route)
        reply = error(500, "internal", "the request could not be handled; it was logged")
    count(route, reply.status)
    return reply


def answered_now(route: str, reply: Reply) -> Reply:
    """Count a reply a handler gave without awaiting (the webhook's subscription check)."""
    count(route, reply.status)
    return reply


# The reason code of a refusal aiohttp makes itself, before or around a handler.
_HTTP_REASONS = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


@web.middleware
async def reasoned_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Answer the refusals aiohttp raises (no route, wrong method, a body over the size limit) in the same
    JSON shape as every other refusal, with a reason code, instead of aiohttp's plain text."""
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        reason = _HTTP_REASONS.get(exc.status, "bad_request")
        headers = {k: v for k, v in exc.headers.items() if k.lower() == "allow"}
        return web.json_response({"error": reason, "message": exc.reason}, status=exc.status, headers=headers)
