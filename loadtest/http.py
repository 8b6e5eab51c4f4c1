"""A lean open-loop HTTP/1.1 client: POSTs on a fixed schedule over keep-alive connections.

The load generator shares the machine's cores with the server it measures, so its own CPU per request is
CPU the server does not get. A general client (httpx, aiohttp) spends a good part of a millisecond per
request on features a benchmark does not use; this one writes pre-built request bytes and reads back only
the status line, the headers and a Content-Length body. Latency counts from each request's scheduled time,
so queueing anywhere (client, network, server) is included, not hidden (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    """Latencies (seconds, from the scheduled time), the answers that were not 200, and the run's length."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    elapsed_s: float = 0.0


def _request(method: str, url: str, headers: dict[str, str], body: bytes | None) -> bytes:
    parts = urlsplit(url)
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    lines = [f"{method} {target or '/'} HTTP/1.1", f"Host: {parts.netloc}"]
    if body is not None:
        lines.append(f"Content-Length: {len(body)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b"")


def build_post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    """Return the bytes of one keep-alive HTTP/1.1 POST of ``body`` to ``url``."""
    return _request("POST", url, headers, body)


def build_get(url: str, headers: dict[str, str]) -> bytes:
    """Return the bytes of one keep-alive HTTP/1.1 GET of ``url``."""
    return _request("GET", url, headers, None)


async def _read_answer(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one response; return its status and whether the server keeps the connection open."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length, keep = 0, True
    for line in lines[1:]:
        name, _, value = line.partition(":")
        name = name.strip().lower()
        if name == "content-length":
            length = int(value)
        elif name == "connection" and value.strip().lower() == "close":
            keep = False
    if length:
        await reader.readexactly(length)
    return status, keep


class Pool:
    """Keep-alive connections to one host; a request takes the longest-idle one or opens a new one.

    Taking the longest-idle connection spreads requests over every connection, so servers sharing a port
    (SO_REUSEPORT hands each connection to one of them) share the load too. With ``limit``, at most that
    many requests are in flight; the others wait for a connection (their latency keeps counting).
    """

    def __init__(self, host: str, port: int, limit: int = 1_000_000, reuse: int = 0) -> None:
        self.host, self.port = host, port
        self.idle: collections.deque[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = collections.deque()
        self.all: list[asyncio.StreamWriter] = []
        self.slots = asyncio.Semaphore(limit)
        # With ``reuse``, a connection is closed after that many requests, as phones come and go: new
        # connections reach servers that joined since (a shared port hands out connections, not requests).
        self.reuse = reuse
        self.served: dict[asyncio.StreamWriter, int] = {}

    async def open(self, count: int) -> None:
        """Open ``count`` idle connections ahead of the first requests."""
        for _ in range(count):
            reader, writer = await asyncio.open_connection(self.host, self.port)
            self.all.append(writer)
            self.idle.append((reader, writer))

    async def post(self, request: bytes) -> int:
        """Send one request from ``build_post``; return the answer's status."""
        async with self.slots:
            if self.idle:
                reader, writer = self.idle.popleft()
            else:
                reader, writer = await asyncio.open_connection(self.host, self.port)
                self.all.append(writer)
            try:
                writer.write(request)
                status, keep = await _read_answer(reader)
            except BaseException:
                writer.close()
                raise
            if self.reuse:
                self.served[writer] = served = self.served.get(writer, 0) + 1
                keep = keep and served < self.reuse
            if keep:
                self.idle.append((reader, writer))
            else:
                writer.close()
                self.served.pop(writer, None)
            return status

    async def close(self) -> None:
        for writer in self.all:
            writer.close()
        for writer in self.all:
            with contextlib.suppress(OSError):
                await writer.wait_closed()


async def open_loop(url: str, requests: list[bytes], rate: float) -> LoadResult:
    """Send ``requests`` (from ``build_post``) at ``rate`` per second, whatever the answers' speed."""
    parts = urlsplit(url)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80)
    result = LoadResult()

    async def one(due: float, request: bytes) -> None:
        try:
            if await pool.post(request) != 200:
                result.errors += 1
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, IndexError):
            result.errors += 1
        result.latencies.append(time.perf_counter() - due)

    start = time.perf_counter() + 0.05
    tasks = []
    try:
        for i, request in enumerate(requests):
            due = start + i / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(due, request)))
        await asyncio.gather(*tasks)
    finally:
        await pool.close()
    result.elapsed_s = time.perf_counter() - start
    return result
