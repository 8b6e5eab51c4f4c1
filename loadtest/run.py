"""``whatsup loadtest``: send a planned fleet's requests to the intake on a fixed schedule (open loop).

Every request leaves when its time comes, whatever the answers' speed, and its latency counts from that
scheduled moment, so queueing anywhere (this client, the network, the server) is included, not hidden.
Tokens and request bytes are made before the clock starts; the run itself only writes bytes and reads
status lines over keep-alive connections. The ground truth is kept as the run goes: every ping id of every
upload the API answered 202 for (``accepted``), and the statuses of everything else.
"""

from __future__ import annotations

import asyncio
import collections
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from base.tokens import issue_driver_token
from loadtest.fleet import EVENTS, PINGS, FleetConfig, Upload, event_body, ping_body
from loadtest.http import Pool, build_post

PROGRESS_EVERY_S = 5.0
OPEN_CONNECTIONS = 64
MAX_IN_FLIGHT = 2_000
# Requests per connection before it is closed: phones come and go, and servers that joined get connections.
REQUESTS_PER_CONNECTION = 500


def percentile(values: Sequence[float], q: float) -> float:
    """Return the ``q`` quantile (0..1) of ``values`` by the nearest-rank method (nan when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


@dataclass
class KindStats:
    """What one kind of request got: latencies from the scheduled time (s) and answers by status."""

    latencies: list[float] = field(default_factory=list)
    statuses: collections.Counter[int] = field(default_factory=collections.Counter)


@dataclass
class LoadReport:
    """A run's outcome: per kind (pings, events) and phase (warm-up, measured), and the ground truth."""

    start_s: float = 0.0
    elapsed_s: float = 0.0
    warmup_s: float = 0.0
    stats: dict[tuple[str, str], KindStats] = field(
        default_factory=lambda: collections.defaultdict(KindStats)
    )
    accepted: list[str] = field(default_factory=list)
    accepted_events: list[str] = field(default_factory=list)
    warmup_accepted: int = 0
    unconfirmed: set[str] = field(default_factory=set)
    pings_sent: int = 0
    max_behind_s: float = 0.0
    failures: collections.Counter[str] = field(default_factory=collections.Counter)

    def kind(self, kind: str, phase: str = "measured") -> KindStats:
        """The stats of one kind of request in one phase."""
        return self.stats[(kind, phase)]


@dataclass(slots=True)
class _Request:
    due_s: float
    kind: str
    data: bytes
    ids: list[str]


def render(
    config: FleetConfig,
    uploads: Sequence[Upload],
    base_url: str,
    token_secret: str,
    api_key: str,
    start_ms: int,
) -> list[_Request]:
    """Make every request's bytes (tokens, bodies, headers) for a run starting at ``start_ms``."""
    ttl_s = int(config.minutes * 60) + 3_600
    tokens = [issue_driver_token(token_secret, config.driver_id(i), ttl_s) for i in range(config.drivers)]
    ping_url, event_url = f"{base_url}/v1/pings", f"{base_url}/v1/deliveries/events"
    json_type = {"Content-Type": "application/json"}
    requests = []
    for upload in uploads:
        due_s = start_ms / 1000 + upload.due_ms / 1000
        if upload.kind == PINGS:
            headers = {"Authorization": f"Bearer {tokens[upload.driver]}", **json_type}
            data = build_post(ping_url, ping_body(upload.pings, start_ms), headers)
            requests.append(_Request(due_s, PINGS, data, [p[0] for p in upload.pings]))
        else:
            assert upload.event is not None
            data = build_post(
                event_url, event_body(upload.event, start_ms), {"X-API-Key": api_key, **json_type}
            )
            requests.append(_Request(due_s, EVENTS, data, [upload.event["event_id"]]))
    return requests


async def run_load(
    requests: Sequence[_Request],
    base_url: str,
    warmup_s: float = 0.0,
    progress: Callable[[str], None] | None = print,
) -> LoadReport:
    """Send every request at its time; return what came back."""
    parts = urlsplit(base_url)
    pool = Pool(parts.hostname or "127.0.0.1", parts.port or 80, MAX_IN_FLIGHT, REQUESTS_PER_CONNECTION)
    await pool.open(OPEN_CONNECTIONS)
    report = LoadReport(warmup_s=warmup_s)
    report.start_s = start = requests[0].due_s if requests else time.time()
    clock_offset = time.time() - time.perf_counter()
    window: list[float] = []
    in_flight = 0

    async def one(request: _Request) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            status = await pool.post(request.data)
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            ValueError,
            IndexError,
        ) as exc:
            status = 0
            report.failures[type(exc).__name__] += 1
        finally:
            in_flight -= 1
        latency = time.perf_counter() + clock_offset - request.due_s
        phase = "warmup" if request.due_s - start < warmup_s else "measured"
        stats = report.kind(request.kind, phase)
        stats.latencies.append(latency)
        stats.statuses[status] += 1
        window.append(latency)
        if status == 202:
            (report.accepted if request.kind == PINGS else report.accepted_events).extend(request.ids)
            if request.kind == PINGS and phase == "warmup":
                report.warmup_accepted += len(request.ids)
        elif request.kind == PINGS:
            report.unconfirmed.update(request.ids)  # nothing promised: it may or may not have landed

    tasks: set[asyncio.Task[None]] = set()
    next_progress = start + PROGRESS_EVERY_S
    try:
        for request in requests:
            now = time.perf_counter() + clock_offset
            if request.due_s > now:
                await asyncio.sleep(request.due_s - now)
                now = time.perf_counter() + clock_offset
            report.max_behind_s = max(report.max_behind_s, now - request.due_s)
            if request.kind == PINGS:
                report.pings_sent += len(request.ids)
            task = asyncio.create_task(one(request))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if progress is not None and now >= next_progress:
                answered = sum(sum(s.statuses.values()) for s in report.stats.values())
                progress(
                    f"  load {now - start:6.0f} s: {report.pings_sent:,} pings sent, {answered:,} requests "
                    f"answered, {in_flight} in flight, p99 {percentile(window, 0.99) * 1000:,.0f} ms "
                    f"(last {PROGRESS_EVERY_S:.0f} s), {len(report.accepted):,} pings accepted"
                )
                window.clear()
                next_progress = now + PROGRESS_EVERY_S
        if tasks:
            await asyncio.gather(*tasks)
    finally:
        await pool.close()
    report.elapsed_s = time.time() - start
    return report


def write_truth(report: LoadReport, out_dir: Path) -> Path:
    """Write the accepted ping ids (one per line, once per accepted upload) and return the file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "accepted_pings.txt"
    path.write_text("".join(f"{ping_id}\n" for ping_id in report.accepted))
    (out_dir / "accepted_events.txt").write_text("".join(f"{e}\n" for e in report.accepted_events))
    return path


def summary(report: LoadReport) -> list[str]:
    """Lines that say what a run sent and got, per kind and phase."""
    lines = []
    for (kind, phase), stats in sorted(report.stats.items()):
        statuses = ", ".join(
            f"{status or 'no answer'}: {n:,}" for status, n in sorted(stats.statuses.items())
        )
        p50, p99 = (percentile(stats.latencies, q) * 1000 for q in (0.5, 0.99))
        lines.append(
            f"{kind:<7} {phase:<8} {len(stats.latencies):>9,} requests  p50 {p50:8.1f} ms  p99 {p99:8.1f} ms"
            f"  ({statuses})"
        )
    lines.append(
        f"{report.pings_sent:,} pings sent, {len(report.accepted):,} accepted (202); at most "
        f"{report.max_behind_s * 1000:.0f} ms behind schedule"
    )
    return lines
