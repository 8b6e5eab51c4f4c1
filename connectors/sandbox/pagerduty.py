"""A local PagerDuty Events API v2: ``POST /v2/enqueue`` with its validation, its answers and its rate limit.

It behaves as PagerDuty's documentation says: a 32-character routing key, ``event_action`` one of
trigger, acknowledge or resolve, a trigger needs ``payload.summary`` (at most 1,024 characters),
``payload.source`` and a ``payload.severity`` of critical, error, warning or info; a good event is answered
202 with its ``dedup_key`` (a new one when the trigger gave none), a bad one 400 ``invalid event`` with the
errors, and more than ``rate_per_min`` events a minute on one routing key 429. Events with the same dedup key
act on one incident: a trigger opens it (or adds to an open one), resolve closes it. ``/_sandbox/events``
and ``/_sandbox/incidents`` show what arrived; ``/_sandbox/faults`` makes the next answers 5xx or 429, the
way Alertmanager must retry.
"""

from __future__ import annotations

import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from connectors.sandbox.common import read_json

ACTIONS = frozenset({"trigger", "acknowledge", "resolve"})
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
MAX_SUMMARY = 1024


@dataclass
class Incident:
    """What one dedup key has become: its status and every event that acted on it."""

    dedup_key: str
    routing_key: str
    summary: str
    status: str = "triggered"
    triggers: int = 0
    resolves: int = 0

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class PagerDutySandbox:
    """The Events API's state: accepted events, incidents by dedup key, injected faults, per-key rates."""

    rate_per_min: int = 120
    events: list[dict[str, Any]] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)
    faults: deque[int] = field(default_factory=deque)
    answered: dict[str, int] = field(default_factory=dict)
    _recent: dict[str, deque[float]] = field(default_factory=dict)

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application()
        app.add_routes(
            [
                web.post("/v2/enqueue", self.enqueue),
                web.get("/_sandbox/events", self.list_events),
                web.get("/_sandbox/incidents", self.list_incidents),
                web.post("/_sandbox/faults", self.add_faults),
                web.post("/_sandbox/reset", self.reset),
                web.get("/health", self.health),
            ]
        )
        return app

    async def enqueue(self, request: web.Request) -> web.Response:
        """Answer one event the way PagerDuty does."""
        if self.faults:
            return self._answer(self.faults.popleft(), {"status": "error", "message": "injected fault"})
        try:
            event = await request.json()
        except ValueError:
            return self._invalid(["Event object is not valid JSON"])
        errors = validate(event)
        if errors:
            return self._invalid(errors)
        if not self._within_rate(event["routing_key"]):
            return self._answer(429, {"status": "throttle", "message": "Too many requests"})
        dedup_key = str(event.get("dedup_key") or uuid.uuid4().hex)
        self.events.append({**event, "dedup_key": dedup_key, "received_at": time.time()})
        self._apply(event, dedup_key)
        return self._answer(202, {"status": "success", "message": "Event processed", "dedup_key": dedup_key})

    def _apply(self, event: dict[str, Any], dedup_key: str) -> None:
        incident = self.incidents.get(dedup_key)
        action = event["event_action"]
        if action == "trigger":
            if incident is None or incident.status == "resolved":
                summary = event["payload"]["summary"]
                incident = self.incidents[dedup_key] = Incident(dedup_key, event["routing_key"], summary)
            incident.triggers += 1
        elif incident is not None and incident.status != "resolved":
            # acknowledge and resolve of an unknown or closed incident are accepted and change nothing.
            incident.status = "acknowledged" if action == "acknowledge" else "resolved"
            incident.resolves += action == "resolve"

    def _within_rate(self, routing_key: str) -> bool:
        now = time.monotonic()
        recent = self._recent.setdefault(routing_key, deque())
        while recent and now - recent[0] > 60:
            recent.popleft()
        if len(recent) >= self.rate_per_min:
            return False
        recent.append(now)
        return True

    def _invalid(self, errors: list[str]) -> web.Response:
        body = {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
        return self._answer(400, body)

    def _answer(self, status: int, body: dict[str, Any]) -> web.Response:
        self.answered[str(status)] = self.answered.get(str(status), 0) + 1
        return web.json_response(body, status=status)

    async def list_events(self, request: web.Request) -> web.Response:
        return web.json_response({"events": self.events, "answered": self.answered})

    async def list_incidents(self, request: web.Request) -> web.Response:
        return web.json_response({"incidents": [i.as_json() for i in self.incidents.values()]})

    async def add_faults(self, request: web.Request) -> web.Response:
        body = await read_json(request)
        self.faults.extend([int(body.get("http_status", 500))] * int(body.get("times", 1)))
        return web.json_response({"faults": len(self.faults)})

    async def reset(self, request: web.Request) -> web.Response:
        self.events.clear()
        self.incidents.clear()
        self.faults.clear()
        self.answered.clear()
        self._recent.clear()
        return web.json_response({"reset": True})

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})


def validate(event: Any) -> list[str]:
    """Return what is wrong with an Events API v2 event, in PagerDuty's words; [] when it is valid."""
    if not isinstance(event, dict):
        return ["Event object must be a JSON object"]
    errors = []
    key = event.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        errors.append("Length of 'routing_key' is incorrect (should be 32 characters)")
    action = event.get("event_action")
    if action not in ACTIONS:
        errors.append("'event_action' is invalid (must be one of: trigger, acknowledge, resolve)")
    if action in ("acknowledge", "resolve") and not event.get("dedup_key"):
        errors.append("'dedup_key' is missing or blank")
    if action == "trigger":
        errors.extend(validate_payload(event.get("payload")))
    return errors


def validate_payload(payload: Any) -> list[str]:
    """Return what is wrong with a trigger's payload."""
    if not isinstance(payload, dict):
        return ["'payload' is missing or not an object"]
    errors = []
    summary = payload.get("summary")
    if not isinstance(summary, str) or not summary:
        errors.append("'payload.summary' is missing or blank")
    elif len(summary) > MAX_SUMMARY:
        errors.append(f"'payload.summary' is longer than {MAX_SUMMARY} characters")
    if not isinstance(payload.get("source"), str) or not payload.get("source"):
        errors.append("'payload.source' is missing or blank")
    if payload.get("severity") not in SEVERITIES:
        errors.append("'payload.severity' is invalid (must be one of: critical, error, warning, info)")
    return errors
