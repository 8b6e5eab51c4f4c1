"""Dispatcher answers out (delivery events come in through ``streams/ingest/events.py``).

``GET /v1/drivers/{driver_id}`` and ``GET /v1/deliveries/{delivery_id}`` answer from ``driver_state``. With
several workers, a request reaching a worker that does not own the driver's partition is forwarded to the one
that does (found with Faust's router, from the partition assignment); a delivery is found through the
worker-local delivery -> driver index, and a worker that does not hold it asks the others. While a worker's
tables are not settled (before its first recovery, and from the start of a rebalance until its recovery ends)
these routes answer 503 ``state_recovering`` with Retry-After instead of a 404 or an old state. Every answer
of these routes, refusals included, is recorded on ``api.access`` before it is sent.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from typing import Any

import httpx
from confluent_kafka import KafkaException
from faust.web import Request, Response, View
from yarl import URL

from base import tls, topics
from base.apikeys import (
    READ_DELIVERIES,
    READ_DRIVERS,
    ApiKeyError,
    Principal,
    authenticate,
)
from base.exceptions import WhatsUpError
from schemas.codecs import codec
from streams.app import app, settings
from streams.deliveries import agents
from streams.deliveries import metrics as delivery_metrics
from streams.web.intake import producer

DRIVER_ROUTE = "/v1/drivers/{driver_id}"
DELIVERY_ROUTE = "/v1/deliveries/{delivery_id}"
HISTORY_ROUTE = "/v1/deliveries/{delivery_id}/history"
ROUTED_HEADER = "X-Whatsup-Routed"

ACCESS_TOPIC = topics.qualified(topics.API_ACCESS, settings.topic_prefix)
_api_access = codec("ApiAccess")


def _any_segment(route: str) -> str:
    """Return ``route`` with each ``{name}`` taking any one path segment: aiohttp's own stops at ``{`` and
    ``}``, so an id holding one got the router's plain-text 404 instead of this API's answer."""
    return re.sub(r"\{(\w+)\}", r"{\1:[^/]+}", route)


def _answer(view: View, route: str, status: int, body: dict[str, Any], **headers: str) -> Response:
    delivery_metrics.API_REQUESTS.labels(route, str(status)).inc()
    return view.json(body, status=status, headers=headers or None)


def _error(view: View, route: str, status: int, reason: str, message: str, **headers: str) -> Response:
    return _answer(view, route, status, {"error": reason, "message": message}, **headers)


async def audit(
    request: Request,
    route: str,
    status: int,
    principal: str,
    role: str,
    *,
    driver_id: str | None = None,
    delivery_id: str | None = None,
    location_read: bool = False,
) -> None:
    """Record one answer of the API on api.access and wait for the broker (raises KafkaException)."""
    record = {
        "access_id": uuid.uuid4().hex,
        "ts": int(time.time() * 1000),
        "principal": principal,
        "role": role,
        "method": request.method,
        "route": route,
        "status": status,
        "driver_id": driver_id,
        "delivery_id": delivery_id,
        "location_read": location_read,
    }
    await producer.send_all([(ACCESS_TOPIC, principal, _api_access.encode(record))])


def _same_node(url: URL) -> bool:
    here = URL(str(app.conf.canonical_url))
    return (url.host, url.port) == (here.host, here.port)


async def _forward(request: Request, base: str) -> httpx.Response:
    headers = {ROUTED_HEADER: "1", "X-API-Key": request.headers.get("X-API-Key", "")}
    async with httpx.AsyncClient(timeout=5.0, verify=tls.client_verify(settings)) as client:
        return await client.get(f"{base.rstrip('/')}{request.url.path}", headers=headers)


def _owner(driver_id: str) -> URL | None:
    """Return the URL of the worker owning a driver's partition, or None when it is this one or unknown."""
    partition = agents.partition_of(driver_id.encode())
    try:
        hosts = app.router.table_metadata(agents.driver_state.name)
    except (KeyError, AttributeError):
        return None
    for host, assigned in hosts.items():
        if any(partition in partitions for partitions in assigned.values()):
            url = URL(str(host)) if "://" in str(host) else URL(f"{tls.scheme(settings)}://{host}")
            return None if _same_node(url) else url
    return None


def state_settled() -> bool:
    """Tell whether this worker's tables hold the state of the partitions it owns.

    Not before the first assignment has been recovered, nor from the start of a rebalance until its recovery
    has finished: meanwhile the store may lack drivers it is about to recover, or still hold drivers another
    worker now owns and changes.
    """
    recovered = app.tables.recovery.completed.is_set()  # type: ignore[attr-defined]  # TableManager's
    return recovered and not app.rebalancing


def _relay(view: View, route: str, answer: httpx.Response) -> Response:
    delivery_metrics.API_ROUTED.labels(route).inc()
    retry = answer.headers.get("Retry-After")
    headers = {"Retry-After": retry} if retry else None
    return view.bytes(
        answer.content, status=answer.status_code, content_type="application/json", headers=headers
    )


def driver_view(driver_id: str, state: Any) -> dict[str, Any]:
    """Return a driver's state as the dispatcher contract shows it."""
    fix = state.last_fix
    return {
        "driver_id": driver_id,
        "status": state.status(),
        "last_fix": None
        if fix is None
        else {"lat": fix.lat, "lon": fix.lon, "ts": fix.ts, "h3_r9": fix.h3_r9, "accuracy_m": fix.accuracy_m},
        "last_update": state.last_update,
        "active_deliveries": [d.public() for d in state.deliveries.values()],
        "open_alerts": [
            {"alert_id": a.alert_id, "kind": a.kind, "started_at": a.started_at}
            for a in state.alerts.values()
        ],
    }


class _ReadView(View):
    route_name = ""
    allowed: frozenset[str] = frozenset()

    async def _principal(self, request: Request, **ids: str | None) -> Principal | Response:
        """Authenticate; a refusal is audited and returned as the response."""
        try:
            return authenticate(settings.api_keys, request.headers.get("X-API-Key"), self.allowed)
        except ApiKeyError as exc:
            # A refusal discloses nothing: it is answered even when the audit trail is down.
            with contextlib.suppress(KafkaException, TimeoutError):
                await audit(request, self.route_name, exc.status, exc.principal, "", **ids)  # type: ignore[arg-type]
            return _error(self, self.route_name, exc.status, exc.reason, str(exc))

    async def _recovering(self, request: Request, who: Principal, **ids: str | None) -> Response:
        """Answer 503 while the state is not settled: a 404 or an old state then would be a wrong answer."""
        message = "this worker is recovering its live state; retry shortly"
        body = {"error": "state_recovering", "message": message}
        return await self._audited(request, 503, body, who, headers={"Retry-After": "1"}, **ids)

    async def _audited(
        self,
        request: Request,
        status: int,
        body: dict[str, Any],
        who: Principal,
        headers: dict[str, str] | None = None,
        **kw: Any,
    ) -> Response:
        try:
            await audit(request, self.route_name, status, who.fingerprint, who.role(self.allowed), **kw)
        except (KafkaException, TimeoutError) as exc:
            return _error(self, self.route_name, 503, "audit_unavailable", f"cannot record the access: {exc}")
        return _answer(self, self.route_name, status, body, **(headers or {}))


@app.page(_any_segment(DRIVER_ROUTE))
class DriverView(_ReadView):
    """A driver's live status, last fix, active deliveries and open alerts (dispatchers)."""

    route_name, allowed = DRIVER_ROUTE, READ_DRIVERS

    async def get(self, request: Request, driver_id: str) -> Response:
        who = await self._principal(request, driver_id=driver_id)
        if not isinstance(who, Principal):
            return who
        owner = None if request.headers.get(ROUTED_HEADER) else _owner(driver_id)
        if owner is not None:
            return _relay(self, self.route_name, await _forward(request, str(owner)))
        if not state_settled():
            return await self._recovering(request, who, driver_id=driver_id)
        state = agents.lookup(driver_id)
        if state is None:
            body = {"error": "not_found", "message": f"no live state for driver {driver_id}"}
            return await self._audited(request, 404, body, who, driver_id=driver_id)
        body = driver_view(driver_id, state)
        located = state.last_fix is not None
        return await self._audited(request, 200, body, who, driver_id=driver_id, location_read=located)


async def _ask_other_workers(request: Request) -> httpx.Response | None:
    """Ask every other worker for a delivery only they can hold.

    Return the first answer that is neither 404 nor 503; else a 503 (a worker still recovering may hold it);
    else None.
    """
    try:
        hosts = list(app.router.tables_metadata())
    except (KeyError, AttributeError):
        return None
    recovering = None
    for host in hosts:
        url = URL(str(host)) if "://" in str(host) else URL(f"{tls.scheme(settings)}://{host}")
        if _same_node(url):
            continue
        try:
            answer = await _forward(request, str(url))
        except httpx.HTTPError:
            continue
        if answer.status_code == 503:
            recovering = recovering or answer
        elif answer.status_code != 404:
            return answer
    return recovering


def may_read(who: Principal, found: tuple[str, Any] | None) -> bool:
    """Tell whether a key may read a delivery: dispatchers and internal keys all, a partner its own."""
    if who.roles & (READ_DELIVERIES - {"partner"}):
        return True
    return found is not None and found[1].owner == who.fingerprint


@app.page(_any_segment(DELIVERY_ROUTE))
class DeliveryView(_ReadView):
    """A delivery's status and ETA (dispatchers, and the partner that assigned it)."""

    route_name, allowed = DELIVERY_ROUTE, READ_DELIVERIES

    async def get(self, request: Request, delivery_id: str) -> Response:
        who = await self._principal(request, delivery_id=delivery_id)
        if not isinstance(who, Principal):
            return who
        if not state_settled():
            return await self._recovering(request, who, delivery_id=delivery_id)
        found = agents.find_delivery(delivery_id)
        if found is None and not request.headers.get(ROUTED_HEADER):
            answer = await _ask_other_workers(request)
            if answer is not None:
                return _relay(self, self.route_name, answer)
        if found is None or not may_read(who, found):
            # A partner asking for someone else's delivery learns nothing, not even that it exists.
            missing = {"error": "not_found", "message": f"no live delivery {delivery_id}"}
            return await self._audited(request, 404, missing, who, delivery_id=delivery_id)
        driver_id, delivery = found
        body: dict[str, Any] = {
            "delivery_id": delivery.delivery_id,
            "driver_id": driver_id,
            "status": delivery.status,
            "promised_at": delivery.promised_at,
            "eta": delivery.eta,
            "updated_at": delivery.updated_at,
            "customer_ref": delivery.customer_ref,
            "accepted_at": delivery.accepted_at,
            "failure_reason": delivery.failure_reason,
        }
        return await self._audited(request, 200, body, who, driver_id=driver_id, delivery_id=delivery_id)


EVENTS_SQL = (
    "SELECT event_id, type, driver_id, toUnixTimestamp64Milli(ts) AS ts FROM delivery_events FINAL"
    " WHERE delivery_id = {delivery_id:String} ORDER BY ts, event_id"
)
POSITIONS_SQL = (
    "SELECT toUnixTimestamp64Milli(device_ts) AS ts, lat, lon FROM gps_pings FINAL"
    " WHERE driver_id = {driver_id:String}"
    " AND device_ts BETWEEN fromUnixTimestamp64Milli({start:Int64}) AND fromUnixTimestamp64Milli({end:Int64})"
    " ORDER BY device_ts LIMIT 5000"
)


@app.page(_any_segment(HISTORY_ROUTE))
class DeliveryHistoryView(_ReadView):
    """A delivery's events and the driver's positions between them, from ClickHouse (the sink's tables)."""

    route_name, allowed = HISTORY_ROUTE, READ_DELIVERIES

    async def get(self, request: Request, delivery_id: str) -> Response:
        who = await self._principal(request, delivery_id=delivery_id)
        if not isinstance(who, Principal):
            return who
        # Imported on first use: a worker that never serves history does not load the ClickHouse client.
        from sinks.query import run_query_async as query

        live = agents.find_delivery(delivery_id)
        if not who.roles & (READ_DELIVERIES - {"partner"}) and (
            live is None or live[1].owner != who.fingerprint
        ):
            missing = {"error": "not_found", "message": f"no delivery {delivery_id} of this key"}
            return await self._audited(request, 404, missing, who, delivery_id=delivery_id)
        try:
            events = await query(settings, EVENTS_SQL, {"delivery_id": delivery_id})
            if not events:
                missing = {"error": "not_found", "message": f"no history for delivery {delivery_id}"}
                return await self._audited(request, 404, missing, who, delivery_id=delivery_id)
            driver_id = events[-1]["driver_id"]
            span = {"driver_id": driver_id, "start": events[0]["ts"], "end": events[-1]["ts"]}
            positions = await query(settings, POSITIONS_SQL, span)
        except WhatsUpError as exc:
            unavailable = {"error": "history_unavailable", "message": str(exc)}
            return await self._audited(request, 503, unavailable, who, delivery_id=delivery_id)
        body: dict[str, Any] = {
            "delivery_id": delivery_id,
            "driver_id": driver_id,
            "events": events,
            "positions": positions,
        }
        located = bool(positions)
        return await self._audited(
            request, 200, body, who, driver_id=driver_id, delivery_id=delivery_id, location_read=located
        )
