"""What both sandboxes share: signatures, throughput buckets, injected faults, callbacks, the message log."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from aiohttp import web

log = logging.getLogger(__name__)


def meta_signature(app_secret: str, body: bytes) -> str:
    """Return Meta's X-Hub-Signature-256 header value for ``body``."""
    return "sha256=" + hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Return Twilio's X-Twilio-Signature: HMAC-SHA1 of the URL and the sorted form fields, base64."""
    data = url + "".join(f"{key}{params[key]}" for key in sorted(params))
    return base64.b64encode(hmac.new(auth_token.encode(), data.encode(), hashlib.sha1).digest()).decode()


@dataclass
class Bucket:
    """An in-memory token bucket: ``rate`` per second, ``burst`` deep."""

    rate: float
    burst: float
    tokens: float = -1.0
    at: float = 0.0

    def take(self, now: float) -> bool:
        """Take one token if there is one."""
        if self.tokens < 0:
            self.tokens, self.at = self.burst, now
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


@dataclass
class Fault:
    """An injected failure: answer ``code`` (or only delay) for the next ``times`` matching requests."""

    code: int | None = None
    http_status: int | None = None
    times: int = 1
    to: str | None = None
    delay_s: float = 0.0

    def matches(self, to: str) -> bool:
        return self.times > 0 and (self.to is None or self.to == to)


@dataclass
class SandboxState:
    """What one sandbox remembers: accepted messages, faults, closed windows, limits, counters."""

    rate_per_s: float
    pair_rate_per_s: float
    pair_burst: float
    callback_delay_s: float = 0.02
    messages: list[dict[str, Any]] = field(default_factory=list)
    faults: list[Fault] = field(default_factory=list)
    closed_windows: set[str] = field(default_factory=set)
    # Recipients whose closed window is found only after the send is accepted (a failed status callback).
    late_window_checks: set[str] = field(default_factory=set)
    undeliverable: set[str] = field(default_factory=set)
    answered: dict[str, int] = field(default_factory=dict)
    callbacks: dict[str, int] = field(default_factory=dict)
    bucket: Bucket = field(init=False)
    pairs: dict[str, Bucket] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # One second's worth of burst: the documented limit is a rate per second.
        self.bucket = Bucket(self.rate_per_s, max(1.0, self.rate_per_s))

    def count(self, outcome: str) -> None:
        self.answered[outcome] = self.answered.get(outcome, 0) + 1

    def next_fault(self, to: str) -> Fault | None:
        """Return (and use up one time of) the first injected fault that matches ``to``."""
        for fault in self.faults:
            if fault.matches(to):
                fault.times -= 1
                return fault
        return None

    def throughput_ok(self) -> bool:
        return self.bucket.take(time.monotonic())

    def pair_ok(self, to: str) -> bool:
        bucket = self.pairs.setdefault(to, Bucket(self.pair_rate_per_s, self.pair_burst))
        return bucket.take(time.monotonic())


async def read_json(request: web.Request) -> dict[str, Any]:
    """Return the JSON object of a control request, or {} when the body is empty."""
    if not request.can_read_body:
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(text="expected a JSON object")
    return body


def control_routes(state: SandboxState) -> list[web.RouteDef]:
    """Return the ``/_sandbox/*`` routes: the message log, faults, windows, limits, counters."""

    async def messages(request: web.Request) -> web.Response:
        return web.json_response({"messages": state.messages})

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"accepted": len(state.messages), "answered": state.answered, "callbacks": state.callbacks}
        )

    async def faults(request: web.Request) -> web.Response:
        body = await read_json(request)
        state.faults.append(
            Fault(
                code=body.get("code"),
                http_status=body.get("http_status"),
                times=int(body.get("times", 1)),
                to=body.get("to"),
                delay_s=float(body.get("delay_s", 0.0)),
            )
        )
        return web.json_response({"faults": len(state.faults)})

    async def clear_faults(request: web.Request) -> web.Response:
        state.faults.clear()
        return web.json_response({"faults": 0})

    async def recipients(request: web.Request) -> web.Response:
        body = await read_json(request)
        to = str(body["to"])
        for flag, members in (("window_open", state.closed_windows), ("deliverable", state.undeliverable)):
            if flag in body:
                (members.discard if body[flag] else members.add)(to)
        if "window_checked_late" in body:
            late = state.late_window_checks
            (late.add if body["window_checked_late"] else late.discard)(to)
        return web.json_response({"to_closed_window": to in state.closed_windows})

    async def limits(request: web.Request) -> web.Response:
        body = await read_json(request)
        state.rate_per_s = float(body.get("rate_per_s", state.rate_per_s))
        state.pair_rate_per_s = float(body.get("pair_rate_per_s", state.pair_rate_per_s))
        state.pair_burst = float(body.get("pair_burst", state.pair_burst))
        state.bucket = Bucket(state.rate_per_s, max(1.0, state.rate_per_s))
        state.pairs.clear()
        return web.json_response({"rate_per_s": state.rate_per_s})

    async def reset(request: web.Request) -> web.Response:
        state.messages.clear()
        state.faults.clear()
        state.closed_windows.clear()
        state.late_window_checks.clear()
        state.undeliverable.clear()
        state.answered.clear()
        state.callbacks.clear()
        state.pairs.clear()
        return web.json_response({"reset": True})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    return [
        web.get("/_sandbox/messages", messages),
        web.get("/_sandbox/stats", stats),
        web.post("/_sandbox/faults", faults),
        web.delete("/_sandbox/faults", clear_faults),
        web.post("/_sandbox/recipients", recipients),
        web.post("/_sandbox/limits", limits),
        web.post("/_sandbox/reset", reset),
        web.get("/health", health),
    ]


class CallbackPoster:
    """Post status callbacks in the background, in order per message, never blocking an answer."""

    RETRY_FOR_S = 180.0
    MAX_RETRY_DELAY_S = 10.0

    def __init__(self, state: SandboxState) -> None:
        self._state = state
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def post(self, url: str | None, bodies: list[tuple[bytes, dict[str, str]]]) -> None:
        """Schedule ``bodies`` (raw body, headers) for ``url``, one after the other."""
        if not url:
            return
        task = asyncio.get_running_loop().create_task(self._post_all(url, bodies))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _post_all(self, url: str, bodies: list[tuple[bytes, dict[str, str]]]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        for body, headers in bodies:
            await asyncio.sleep(self._state.callback_delay_s)
            # As Meta does, a callback not answered 200 is posted again, less and less often (Meta keeps
            # trying for days; the sandbox for RETRY_FOR_S).
            delay, waited = 1.0, 0.0
            while True:
                try:
                    async with self._session.post(url, data=body, headers=headers) as answer:
                        outcome = str(answer.status)
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = type(exc).__name__
                self._state.callbacks[outcome] = self._state.callbacks.get(outcome, 0) + 1
                if outcome == "200" or waited >= self.RETRY_FOR_S:
                    break
                await asyncio.sleep(delay)
                waited, delay = waited + delay, min(delay * 2, self.MAX_RETRY_DELAY_S)

    async def close(self, app: web.Application | None = None) -> None:
        """Wait briefly for callbacks in flight, then close the session."""
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        for task in list(self._tasks):  # still retrying a callback nobody answers: give up with the sandbox
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=2)
        if self._session is not None:
            await self._session.close()


class ProviderError(Exception):
    """An error answer in the provider's own shape."""

    code: int

    def response(self) -> web.Response:
        raise NotImplementedError


class SandboxServer:
    """One sandbox: its send route, the control routes, callbacks and counters around a SandboxState."""

    send_path = ""

    def __init__(self, state: SandboxState) -> None:
        self.state = state
        self.callbacks = CallbackPoster(state)

    def app(self) -> web.Application:
        """Build the aiohttp application."""
        app = web.Application()
        app.add_routes([web.post(self.send_path, self.send), *control_routes(self.state)])
        app.on_cleanup.append(self.callbacks.close)
        return app

    async def send(self, request: web.Request) -> web.Response:
        """Answer one send request, counting the outcome."""
        try:
            answer = await self.accept(request)
        except ProviderError as exc:
            self.state.count(str(exc.code))
            return exc.response()
        self.state.count("accepted")
        return answer

    async def accept(self, request: web.Request) -> web.Response:
        raise NotImplementedError
