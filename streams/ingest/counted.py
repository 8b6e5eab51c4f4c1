"""Every intake answer counted in ``whatsup_http_requests_total``, the unexpected failures (500) included.

Both web servers (``whatsup ingest`` and the worker's own routes) answer through ``answered``: a handler that
raises is logged and answered 500, and that 500 is counted like any other answer, so the error-rate alert
sees it.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable

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
    except Exception:
        log.exception("the %s handler failed", route)
        reply = error(500, "internal", "the request could not be handled; it was logged")
    count(route, reply.status)
    return reply


def answered_now(route: str, reply: Reply) -> Reply:
    """Count a reply a handler gave without awaiting (the webhook's subscription check)."""
    count(route, reply.status)
    return reply
