"""Draw N inputs from a strategy outside pytest, send each to a running process, and tally the answers.

A refusal counts as reasoned when it is a 4xx whose JSON body names a reason code (``{"error":
"snake_case"}``); a 5xx, a connection reset or a timeout is a failure, as is a refusal without a code.
"""

from __future__ import annotations

import collections
import json
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from loadtest.fuzzing.requests import Request

T = TypeVar("T")
REASON_CODE = re.compile(r"[a-z][a-z0-9_]{1,63}")
SAMPLES = 5


def run_examples(strategy: st.SearchStrategy[T], count: int, act: Callable[[T], None]) -> None:
    """Call ``act`` on ``count`` inputs drawn from ``strategy``, the same ones every run (derandomized)."""

    @settings(
        max_examples=count,
        database=None,
        derandomize=True,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.generate],  # every input is tallied; nothing to shrink
    )
    @given(strategy)
    def one(value: T) -> None:
        act(value)

    one()


def reason_code(status: int, body: bytes) -> str | None:
    """Return the reason code a refusal's JSON body names, or None if it names none."""
    try:
        document = json.loads(body)
    except ValueError:
        return None
    code = document.get("error") if isinstance(document, dict) else None
    return code if isinstance(code, str) and REASON_CODE.fullmatch(code) else None


@dataclass
class Tally:
    """What one endpoint answered its inputs: by status class, refusals without a code, failed inputs."""

    name: str
    sent: int = 0
    classes: collections.Counter[str] = field(default_factory=collections.Counter)
    unreasoned: int = 0
    unsent: int = 0  # drawn requests the client itself refused to send (not counted in ``sent``)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    samples: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    @property
    def failures(self) -> int:
        """Answers that break the contract: 5xx, no answer at all, a refusal without a reason code."""
        return self.classes["5xx"] + self.classes["no answer"] + self.unreasoned

    def record(self, request: Request, status: int | None, body: bytes) -> None:
        """Count one answer (``status`` None: the connection failed or timed out; -1: never sent)."""
        if status == -1:
            self.unsent += 1
            return
        self.sent += 1
        kind = "no answer" if status is None else f"{status // 100}xx"
        self.classes[kind] += 1
        failed = kind in ("5xx", "no answer")
        if kind == "4xx" and status is not None:
            code = reason_code(status, body)
            self.reasons[code or "(none)"] += 1
            failed = code is None
            self.unreasoned += failed
        if failed and len(self.samples) < SAMPLES:
            self.samples.append(f"{status}: {body[:120]!r} <- {request.describe()}")

    def summary(self) -> str:
        """Return one line: inputs, classes, unreasoned."""
        classes = ", ".join(f"{k} {v}" for k, v in sorted(self.classes.items()))
        return f"{self.name}: {self.sent} inputs ({classes}), {self.unreasoned} unreasoned"


def send_raw(host: str, port: int, data: bytes, timeout_s: float) -> tuple[int | None, bytes]:
    """Send one raw HTTP/1.1 request (with Connection: close); return the status and body, None if none."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    except OSError:
        return None, b""
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    try:
        return int(head.split(b" ", 2)[1]), body
    except (IndexError, ValueError):
        return None, head[:200]


class Sender:
    """Send requests to one process over a keep-alive connection; a failure is an answer of its own."""

    def __init__(self, base_url: str, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.client = httpx.Client(timeout=timeout_s)

    def send(self, request: Request) -> tuple[int | None, bytes]:
        """Return the status and body of ``request``'s answer (None, b"" if it got none)."""
        if request.raw is not None:
            url = httpx.URL(self.base_url)
            return send_raw(url.host, url.port or 80, request.raw, self.timeout_s)
        try:
            answer = self.client.request(
                request.method,
                self.base_url + request.path,
                headers=[(name.encode(), value) for name, value in request.headers],
                content=request.body if request.method != "GET" else None,
            )
        except httpx.LocalProtocolError:  # httpx will not write it: no server ever sees such a request
            return -1, b""
        except httpx.HTTPError:
            return None, b""
        return answer.status_code, answer.content

    def close(self) -> None:
        """Close the connection."""
        self.client.close()


def fuzz_endpoint(
    base_url: str, name: str, strategy: st.SearchStrategy[Request], count: int, timeout_s: float = 30.0
) -> Tally:
    """Send ``count`` drawn requests to ``base_url`` and tally the answers."""
    tally = Tally(name)
    sender = Sender(base_url, timeout_s)
    started = time.monotonic()

    def act(request: Request) -> None:
        status, body = sender.send(request)
        tally.record(request, status, body)

    try:
        run_examples(strategy, count, act)
    finally:
        sender.close()
        tally.elapsed_s = time.monotonic() - started
    return tally


def healthy(url: str, alive: Callable[[], bool], timeout_s: float = 10.0) -> bool:
    """Tell whether a process still runs and answers its /health with 200 within ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    return False


def tally_dict(tally: Tally) -> dict[str, Any]:
    """Return a tally as plain data (for a JSON dump of a run)."""
    return {
        "name": tally.name,
        "sent": tally.sent,
        "classes": dict(tally.classes),
        "unreasoned": tally.unreasoned,
        "unsent": tally.unsent,
        "reasons": dict(tally.reasons),
        "samples": tally.samples,
        "elapsed_s": round(tally.elapsed_s, 1),
    }
