"""The ``console`` suite: the fleet-wide API at the specified fleet size.

20,000 driver states (the changelog a worker writes, in its own packed form) and a day of incidents are on the
broker before a ``whatsup console`` starts. Then: how long it takes to read them, the first page of
``GET /v1/drivers`` (and a filtered one, and the incident list) under an open-loop load while the states
keep changing at the fleet's rate, and how fresh a changed state is on the API.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import threading
import time
from dataclasses import replace

import h3
import httpx
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from base import topics
from base.settings import Settings
from benches.harness import Result, Suite, bench_settings, free_port, worker_env
from loadtest.http import build_get, open_loop
from loadtest.processes import Process
from schemas.codecs import codec
from streams.console.feed import changelog_topic
from streams.deliveries.stall import OpenAlert
from streams.deliveries.state import Delivery, DriverState, LastFix

KEY = "bench-dispatch-" + "k" * 20
TARGET_P99_MS = 300.0
CENTRE = (-23.55, -46.63)
# The fleet suite's drivers upload every 15 s: one changed state per driver per upload.
UPLOAD_S = 15.0
CPU_NOTE = "the console's CPU in the run over its requests: audit records and state changes included"

NOTES = (
    "The console reads the `driver_state` changelog (compacted: every driver's latest state) and keeps one"
    " row per driver in memory; a page is the first `limit` rows of the filtered fleet in urgency order"
    " (`heapq.nsmallest`), so its cost grows with the fleet, not with the page.",
    "Every answer is first recorded on `api.access` (the audit trail) and waits for the broker's"
    " acknowledgement: that round trip is part of each latency.",
    "While the requests run, a producer rewrites every driver's state once per 15 s upload, as the fleet"
    " suite's phones make the worker do; the console applies those changes on the same event loop.",
    f"Target: the first page answers in under {TARGET_P99_MS:.0f} ms at the 99th percentile; freshness is"
    " the time from a state written on the changelog to the API showing it.",
)


def fleet_state(i: int, now_ms: int, moved: int = 0) -> DriverState:
    """Return driver ``i``'s synthetic state: a quarter each offline, stalled, moving, idle."""
    lat, lon = CENTRE[0] + (i % 140) * 0.002 + moved * 1e-5, CENTRE[1] + (i // 140 % 140) * 0.002
    cell = h3.str_to_int(h3.latlng_to_cell(lat, lon, 9))
    state = DriverState(last_fix=LastFix(now_ms, lat, lon, cell, 5.0, 7.0), last_update=now_ms)
    kind = ("offline", "stall", None, None)[i % 4]
    if kind:
        state.alerts[kind] = OpenAlert(f"{kind}-b{i}", kind, now_ms - 300_000, lat, lon, None)
    if i % 4 == 3:
        state.movement.still_since = now_ms - 120_000
    if i % 10 == 0:
        state.deliveries[f"d{i}"] = Delivery(
            f"d{i}",
            "picked_up",
            (lat, lon),
            CENTRE,
            now_ms + 1_800_000,
            None,
            now_ms,
            now_ms,
            eta=now_ms + 900_000,
        )
    return state


def _load_fleet(settings: Settings, drivers: int) -> None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    spec = NewTopic(changelog_topic(settings), settings.partitions, 1, config={"cleanup.policy": "compact"})
    for future in admin.create_topics([spec]).values():
        future.result(30)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 20})
    now = int(time.time() * 1000)
    for i in range(drivers):
        producer.produce(changelog_topic(settings), fleet_state(i, now).pack(), f"b{i:05d}".encode())
        producer.poll(0)
    encode, alerts = codec("Alert").encode, topics.qualified(topics.ALERTS, settings.topic_prefix)
    for i in range(0, drivers, 10):
        alert = {
            "alert_id": f"stall-b{i}",
            "kind": "stall",
            "driver_id": f"b{i:05d}",
            "delivery_id": None,
            "started_at": now - 300_000,
            "detected_at": now - i,
            "lat": CENTRE[0],
            "lon": CENTRE[1],
            "h3_r9": 0,
            "severity": "warning",
            "detail": "",
        }
        producer.produce(alerts, encode(alert), f"b{i:05d}".encode())
    producer.flush(60)


def _keep_changing(settings: Settings, drivers: int, stop: threading.Event) -> None:
    """Rewrite every driver's state once per upload period, spread evenly, until ``stop``."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 5})
    per_tick, tick_s, moved, i = max(1, int(drivers / UPLOAD_S / 20)), 0.05, 1, 0
    while not stop.wait(tick_s):
        now = int(time.time() * 1000)
        for _ in range(per_tick):
            producer.produce(
                changelog_topic(settings), fleet_state(i, now, moved).pack(), f"b{i:05d}".encode()
            )
            i = (i + 1) % drivers
            moved += i == 0
        producer.poll(0)
    producer.flush(10)


def _freshness(settings: Settings, url: str, samples: int) -> list[float]:
    """Seconds from a changed state on the changelog to the API showing it, for ``samples`` drivers."""
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "linger.ms": 0})
    seen = []
    with httpx.Client(base_url=url, headers={"X-API-Key": KEY}, timeout=5) as client:
        for n in range(samples):
            driver, marker = 7 + 40 * n, 10_000 + n
            state = fleet_state(driver, int(time.time() * 1000), marker).pack()
            producer.produce(changelog_topic(settings), state, f"b{driver:05d}".encode())
            producer.flush(5)
            written = time.perf_counter()
            expected = fleet_state(driver, 0, marker).last_fix
            while time.perf_counter() - written < 10:
                fix = client.get(f"/v1/drivers/b{driver:05d}").json().get("last_fix") or {}
                if expected is not None and fix.get("lat") == expected.lat:
                    seen.append(time.perf_counter() - written)
                    break
                time.sleep(0.005)
    return seen


def _p(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000 if ordered else float("nan")


def bench_console(base: Settings, drivers: int, seconds: float, rate: float) -> list[Result]:
    """Load ``drivers`` states, start a console, and measure its catch-up, pages under load and freshness."""
    settings = bench_settings(replace(base, partitions=base.partitions), "console")
    _load_fleet(settings, drivers)
    env = worker_env(settings, WHATSUP_CONSOLE_PORT=str(free_port()), WHATSUP_API_KEYS=f"{KEY}:dispatcher")
    url = f"http://127.0.0.1:{env['WHATSUP_CONSOLE_PORT']}"
    started = time.perf_counter()
    console = Process(
        "console", "console", env, f"{url}/health", settings.data_dir / "bench" / settings.app_id
    )
    console.start()
    results = [Result("load average (1 min), suite start", os.getloadavg()[0], "ratio", "2 cores")]
    try:
        console.wait_healthy(timeout_s=300, restarts=0)
        results.append(
            Result(f"catch-up: {drivers:,} driver states read", time.perf_counter() - started, "s")
        )
        stop = threading.Event()
        changer = threading.Thread(target=_keep_changing, args=(settings, drivers, stop), daemon=True)
        changer.start()
        try:
            headers = {"X-API-Key": KEY}
            cell = h3.cell_to_parent(h3.latlng_to_cell(CENTRE[0] + 0.02, CENTRE[1] + 0.02, 9), 7)
            routes = {
                "first page of GET /v1/drivers (100 rows)": f"{url}/v1/drivers?limit=100",
                "GET /v1/drivers?status=stalled,offline&cell=… (100 rows)": (
                    f"{url}/v1/drivers?status=stalled,offline&cell={cell}&limit=100"
                ),
                "first page of GET /v1/alerts (100 incidents)": f"{url}/v1/alerts?state=open&limit=100",
            }
            for label, target in routes.items():
                requests = [build_get(target, headers)] * int(rate * seconds)
                cpu_before = console.cpu_seconds()
                load = asyncio.run(open_loop(url, requests, rate))
                cpu_ms = (console.cpu_seconds() - cpu_before) * 1000 / max(1, len(requests))
                note = (
                    f"{rate:.0f} req/s for {seconds:.0f} s, {load.errors} errors; states changing meanwhile"
                )
                results += [
                    Result(f"{label}: p50", _p(load.latencies, 0.5), "ms", note),
                    Result(f"{label}: p99", _p(load.latencies, 0.99), "ms", f"target {TARGET_P99_MS:.0f} ms"),
                    Result(f"{label}: console CPU per request", cpu_ms, "ms", CPU_NOTE),
                ]
            fresh = _freshness(settings, url, 30)
            median_ms, max_ms = statistics.median(fresh) * 1000, max(fresh) * 1000
            results += [
                Result("state on the changelog to the API: median", median_ms, "ms", f"{len(fresh)} samples"),
                Result("state on the changelog to the API: max", max_ms, "ms", "target 2,000 ms"),
            ]
        finally:
            stop.set()
            changer.join(15)
    finally:
        console.stop()
    results.append(Result("load average (1 min), suite end", os.getloadavg()[0], "ratio", "2 cores"))
    return results


def run(settings: Settings, quick: bool) -> list[Result]:
    """Run the console suite (quick: 2,000 drivers, 3 s per route)."""
    if quick:
        return bench_console(settings, drivers=2_000, seconds=3.0, rate=20.0)
    return bench_console(settings, drivers=20_000, seconds=20.0, rate=20.0)


SUITE = Suite("console", "Dispatcher console: the fleet-wide API at 20,000 drivers", run, NOTES)
