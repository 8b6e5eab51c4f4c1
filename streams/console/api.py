"""The console's HTTP API: fleet-wide queries, incidents and their actions, sign-in, and the push channel.

Callers are dispatchers signed in through the page (a session cookie) or machines with a dispatcher API key
(``X-API-Key``); the page never holds a key. Every answer of a route that discloses a position (drivers,
incidents, trails), refusals included, is recorded on ``api.access`` before it is sent, as on the worker's
routes. A POST that acts (acknowledge, resolve, message a driver) is recorded too, and must carry a JSON
body: a cross-site form cannot send one, and the cookie is SameSite=Strict besides.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from base import jsontext, topics
from base.apikeys import READ_DRIVERS, ApiKeyError, authenticate
from base.settings import Settings
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.producer import AsyncProducer
from schemas.codecs import codec
from streams.console import metrics
from streams.console.accounts import Accounts, SignInError
from streams.console.feed import ConsoleFeed
from streams.console.fleet import STATUSES, DeliveryQuery, DriverQuery, QueryError
from streams.console.incidents import ACTIONS, IncidentQuery

COOKIE = "whatsup_console"
MAX_NOTE = 500
MAX_MESSAGE = 1000
TRAIL_MINUTES = 15
HOT_CELLS_SQL = (
    "SELECT lower(hex(h3_r7)) AS cell, count() AS pings, uniqExact(driver_id) AS drivers FROM gps_pings"
    " WHERE device_ts > now64(3) - INTERVAL {minutes:UInt32} MINUTE"
    " GROUP BY h3_r7 ORDER BY drivers DESC, pings DESC LIMIT 300"
)
TRAIL_SQL = (
    "SELECT toUnixTimestamp64Milli(device_ts) AS ts, lat, lon FROM gps_pings FINAL"
    " WHERE driver_id = {driver_id:String} AND device_ts > now64(3) - INTERVAL {minutes:UInt32} MINUTE"
    " ORDER BY device_ts LIMIT 2000"
)
Query = Callable[[Settings, str, dict[str, Any]], Awaitable[list[dict[str, Any]]]]


@dataclass(frozen=True)
class Caller:
    """Who asks: ``principal`` goes to the audit trail, ``name`` onto the actions they take."""

    principal: str
    name: str
    role: str


class Refused(Exception):
    """An answer other than 200, raised from a handler's checks: its status, reason and message."""

    def __init__(self, status: int, reason: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.status, self.reason, self.param = status, reason, param
        self.principal = "anonymous"  # who presented a refused key, for the audit trail

    def body(self) -> dict[str, Any]:
        """Return the JSON answer: the reason, the message, and the parameter at fault if any."""
        return {"error": self.reason, "message": str(self), **({"param": self.param} if self.param else {})}


Handler = Callable[[web.Request, "Caller"], Awaitable[tuple[dict[str, Any], dict[str, Any]]]]


class ConsoleApi:
    """The routes, on the feed's fleet and incidents."""

    def __init__(
        self, settings: Settings, feed: ConsoleFeed, accounts: Accounts, producer: AsyncProducer, query: Query
    ) -> None:
        self.settings, self.feed, self.accounts = settings, feed, accounts
        self.producer, self.query = producer, query
        self._access = topics.qualified(topics.API_ACCESS, settings.topic_prefix)
        self._actions = topics.qualified(topics.ALERT_ACTIONS, settings.topic_prefix)
        self._outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
        self._encode_access, self._encode_action = codec("ApiAccess").encode, codec("AlertAction").encode
        self._encode_outbound = codec("OutboundMessage").encode
        self.registry: Any = None  # connectors.whatsapp.registry.Registry, set by the process

    # -- who asks, and the audit trail --------------------------------------------------------------

    async def caller(self, request: web.Request) -> Caller:
        """Return the signed-in dispatcher or the API key's principal; raise Refused otherwise."""
        name = await self.accounts.session(request.cookies.get(COOKIE))
        if name is not None:
            return Caller(f"dispatcher:{name}", name, "dispatcher")
        if "X-API-Key" not in request.headers:
            raise Refused(401, "not_signed_in", "sign in at /console/login, or send X-API-Key")
        try:
            who = authenticate(self.settings.api_keys, request.headers.get("X-API-Key"), READ_DRIVERS)
        except ApiKeyError as exc:
            refused = Refused(exc.status, exc.reason, str(exc))
            refused.principal = exc.principal
            raise refused from exc
        return Caller(who.fingerprint, who.fingerprint, who.role(READ_DRIVERS))

    async def audit(
        self, request: web.Request, route: str, status: int, caller: Caller | None, principal: str, **kw: Any
    ) -> None:
        """Record one answer on api.access and wait for the broker."""
        principal = caller.principal if caller else principal
        record = {
            "access_id": uuid.uuid4().hex,
            "ts": int(time.time() * 1000),
            "principal": principal,
            "role": caller.role if caller else "",
            "method": request.method,
            "route": route,
            "status": status,
            "driver_id": kw.get("driver_id"),
            "delivery_id": kw.get("delivery_id"),
            "location_read": bool(kw.get("location_read")),
        }
        await self.producer.send_all([(self._access, principal, self._encode_access(record))])

    def audited(self, route: str, locates: bool, handler: Handler) -> Callable[[web.Request], Any]:
        """Wrap a handler: authenticate, wait for the feed, audit the answer, turn a Refused into JSON."""

        async def respond(request: web.Request) -> web.Response:
            started = time.perf_counter()
            caller: Caller | None = None
            principal = "anonymous"
            extra: dict[str, Any] = {}
            try:
                caller = await self.caller(request)
                if not self.feed.ready.is_set():
                    raise Refused(503, "console_loading", "the console is reading the fleet; retry shortly")
                body, extra = await handler(request, caller)
                status = 200
            except Refused as refused:
                status, body, principal = refused.status, refused.body(), refused.principal
            ids = {"driver_id": request.match_info.get("driver_id"), **extra}
            try:
                located = locates and status == 200
                await self.audit(request, route, status, caller, principal, location_read=located, **ids)
            except Exception as exc:  # KafkaException, TimeoutError: an answer not recorded is not given
                if status != 200:
                    return _json(body, status)  # a refusal discloses nothing
                return _json(
                    {"error": "audit_unavailable", "message": f"cannot record the access: {exc}"}, 503
                )
            metrics.REQUESTS.labels(route, str(status)).inc()
            metrics.ANSWER_SECONDS.labels(route).observe(time.perf_counter() - started)
            return _json(body, status, {"Retry-After": "1"} if status == 503 else None)

        return respond

    # -- reads ------------------------------------------------------------------------------------------

    async def drivers(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/drivers``: a page of drivers, most urgent first."""
        query = _parsed(DriverQuery.parse, request)
        rows, cursor = self.feed.fleet.page(query)
        body = {"drivers": [r.public() for r in rows], "next_cursor": cursor}
        return {**body, "counts": self.feed.fleet.counts()}, {}

    async def driver(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/drivers/{driver_id}``: one driver's row, as the console holds it."""
        row = self.feed.fleet.rows.get(request.match_info["driver_id"])
        if row is None:
            raise Refused(404, "not_found", f"no live state for driver {request.match_info['driver_id']}")
        return row.public(), {}

    async def trail(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/drivers/{driver_id}/trail``: the driver's fixes of the last 15 minutes (ClickHouse)."""
        params = {"driver_id": request.match_info["driver_id"], "minutes": TRAIL_MINUTES}
        return {"driver_id": params["driver_id"], "fixes": await self._analytics(TRAIL_SQL, params)}, {}

    async def alerts(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/alerts``: a page of incidents, newest first."""
        incidents, cursor = self.feed.incidents.page(_parsed(IncidentQuery.parse, request))
        body = {"alerts": [i.public() for i in incidents], "next_cursor": cursor}
        return {**body, "open": self.feed.incidents.open_count()}, {}

    async def deliveries(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/deliveries``: active deliveries with ETA and promise, soonest promise first."""
        query = _parsed(DeliveryQuery.parse, request)
        rows, cursor = self.feed.fleet.deliveries(query, int(time.time() * 1000))
        return {"deliveries": rows, "next_cursor": cursor}, {}

    async def hot_cells(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/cells/hot``: res-7 cells by drivers seen in the last 15 minutes (ClickHouse)."""
        cells = await self._analytics(HOT_CELLS_SQL, {"minutes": TRAIL_MINUTES})
        return {"minutes": TRAIL_MINUTES, "cells": cells}, {}

    async def summary(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``GET /v1/summary``: the counts at a glance."""
        now = int(time.time() * 1000)
        late, _ = self.feed.fleet.deliveries(DeliveryQuery(late=True, limit=10**9), now)
        incidents = self.feed.incidents.by_id.values()
        at_risk = sum(1 for i in incidents if i.state != "resolved" and i.alert["kind"] == "late_risk")
        return {
            "drivers": self.feed.fleet.counts(),
            "deliveries_late": len(late),
            "deliveries_at_risk": at_risk,
            "alerts_open": self.feed.incidents.open_count(),
        }, {}

    async def _analytics(self, sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            return await self.query(self.settings, sql, params)
        except Exception as exc:  # the sink down or refusing: the live parts of the page still work
            raise Refused(503, "analytics_unavailable", f"ClickHouse did not answer: {exc}") from exc

    # -- actions ----------------------------------------------------------------------------------------

    async def act(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``POST /v1/alerts/{alert_id}/ack|resolve`` with an optional ``{"note": ...}``."""
        alert_id, what = request.match_info["alert_id"], request.match_info["action"]
        if what not in ACTIONS:
            raise Refused(404, "not_found", f"no action {what!r}; one of {', '.join(ACTIONS)}")
        body = await _json_body(request)
        note = body.get("note", "")
        if not isinstance(note, str) or len(note) > MAX_NOTE:
            raise Refused(400, "bad_note", f"note: a string of at most {MAX_NOTE} characters", "note")
        incident = self.feed.incidents.by_id.get(alert_id)
        if incident is None:
            raise Refused(404, "not_found", f"no incident {alert_id} in the console's window")
        record = {
            "action_id": uuid.uuid4().hex,
            "alert_id": alert_id,
            "action": what,
            "by": caller.name,
            "ts": int(time.time() * 1000),
            "note": note,
            "driver_id": incident.alert["driver_id"],
        }
        await self.producer.send_all([(self._actions, alert_id, self._encode_action(record))])
        return {"accepted": True, "action": {k: v for k, v in record.items() if k != "action_id"}}, {
            "driver_id": incident.alert["driver_id"]
        }

    async def message(self, request: web.Request, caller: Caller) -> tuple[dict[str, Any], dict[str, Any]]:
        """``POST /v1/drivers/{driver_id}/message`` with ``{"text": ...}``: through the WhatsApp sender."""
        driver_id = request.match_info["driver_id"]
        text = (await _json_body(request)).get("text")
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_MESSAGE:
            raise Refused(400, "bad_text", f"text: 1 to {MAX_MESSAGE} characters", "text")
        driver = await self.registry.driver_by_id(driver_id) if self.registry is not None else None
        if driver is None:
            raise Refused(404, "not_registered", f"driver {driver_id} has no WhatsApp number in the registry")
        now = int(time.time() * 1000)
        key = f"dispatcher:{driver_id}:{uuid.uuid4().hex[:12]}"
        message = {
            "message_key": key,
            "to": driver.phone,
            "to_hash": hash_phone(self.registry.hash_key, driver.phone),
            # Free text inside the 24-hour window; outside it the sender falls back to this template.
            "template": "whatsup_update",
            "language": driver.language,
            "params": [],
            "text": text.strip(),
            "buttons": [],
            "reason": "dispatcher_message",
            "driver_id": driver_id,
            "delivery_id": None,
            "created_at": now,
        }
        await self.producer.send_all([(self._outbound, message["to_hash"], self._encode_outbound(message))])
        return {"accepted": True, "message_key": key, "by": caller.name}, {}

    # -- sign-in ----------------------------------------------------------------------------------------

    async def login(self, request: web.Request) -> web.Response:
        """``POST /auth/login`` with ``{"name", "password", "code"}``: a session cookie, or 401/429."""
        try:
            body = await _json_body(request)
        except Refused as refused:
            return _json(refused.body(), refused.status)
        fields = [body.get(k) for k in ("name", "password", "code")]
        if not all(isinstance(f, str) for f in fields):
            return _json({"error": "bad_request", "message": "send name, password and code as strings"}, 400)
        name, password, code = (str(f) for f in fields)
        address = request.remote or "unknown"
        try:
            token = await self.accounts.sign_in(name, password, code, address, time.time())
        except SignInError as exc:
            metrics.SIGN_INS.labels(exc.reason).inc()
            return _json({"error": exc.reason, "message": str(exc)}, exc.status)
        metrics.SIGN_INS.labels("signed_in").inc()
        response = _json({"signed_in": name})
        response.set_cookie(COOKIE, token, httponly=True, secure=True, samesite="Strict", path="/")
        return response

    async def logout(self, request: web.Request) -> web.Response:
        """``POST /auth/logout``: end the session."""
        await self.accounts.sign_out(request.cookies.get(COOKIE))
        response = _json({"signed_out": True})
        response.del_cookie(COOKIE, path="/")
        return response

    async def whoami(self, request: web.Request) -> web.Response:
        """``GET /auth/session``: the signed-in dispatcher, or 401."""
        name = await self.accounts.session(request.cookies.get(COOKIE))
        if name is None:
            return _json({"error": "not_signed_in", "message": "sign in at /console/login"}, 401)
        return _json({"name": name, "tile_url": self.settings.console_tile_url, "statuses": STATUSES})

    # -- the push channel -------------------------------------------------------------------------------

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/stream``: Server-Sent Events: each incident as it changes, changed drivers every 2 s."""
        try:
            caller = await self.caller(request)
        except Refused as refused:
            return _json(refused.body(), refused.status)
        await self.audit(request, "/v1/stream", 200, caller, caller.principal, location_read=True)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"}
        )
        await response.prepare(request)
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(maxsize=10_000)

        def tell(kind: str, payload: dict[str, Any]) -> None:
            with contextlib.suppress(asyncio.QueueFull):  # a page too slow to read loses events, then reloads
                queue.put_nowait((kind, payload))

        self.feed.listeners.append(tell)
        metrics.STREAMS.inc()
        try:
            await response.write(b"retry: 2000\n\n")
            while True:
                try:
                    kind, payload = await asyncio.wait_for(queue.get(), timeout=15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                await response.write(f"event: {kind}\ndata: {json.dumps(payload)}\n\n".encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.feed.listeners.remove(tell)
            metrics.STREAMS.dec()
        return response


def _json(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response(body, status=status, headers=headers)


def _parsed(parse: Callable[[Any], Any], request: web.Request) -> Any:
    try:
        return parse(request.query)
    except QueryError as exc:
        raise Refused(400, "bad_parameter", str(exc), exc.param) from exc


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_type != "application/json":
        raise Refused(415, "json_required", "send Content-Type: application/json")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as exc:
        raise Refused(413, "body_too_large", exc.text or "the body is over the console's limit") from exc
    try:
        # JSON is UTF-8 (RFC 8259): the bytes are parsed as such, whatever charset the header names.
        body = jsontext.loads(raw)
    except ValueError as exc:
        raise Refused(400, "malformed_json", f"the body is not JSON text: {exc}") from exc
    if not isinstance(body, dict):
        raise Refused(400, "malformed_json", "the body is a JSON object")
    return body
