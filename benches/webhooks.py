"""The ``webhooks`` benchmark suite: latency of ``POST /webhooks/whatsapp`` under an open-loop load.

Requests are sent on a fixed schedule (500 per second by default) whatever the answers' speed, and each
latency is measured from its scheduled time, so a slow worker shows up as queueing instead of hiding it
(no coordinated omission). Each request is one signed text message from a registered driver, with a fresh
message id: the full path of verify, normalize, Redis dedupe claim, registry lookup, Kafka acks=all.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka.admin import AdminClient

from base.settings import PROJECT_ROOT, Settings
from benches.harness import Result, Suite, bench_settings, cpu_seconds, start_worker, wait_healthy, worker_env
from connectors.whatsapp.signatures import meta_signature
from loadtest.http import build_post, open_loop
from loadtest.soak_webhooks import notification

P99_TARGET = "target under 50 ms at 500/s"
CPU_NOTE = "the request and the agents' work on its event"
TOPICS_NOTE = "the worker's Kafka client decodes metadata for every one of them"
LOADGEN_NOTE = "it runs on the same two cores as the worker"
LOAD = "2 cores: above 2, processes wait for a CPU"
NOTES = (
    "Open loop: requests leave on a fixed schedule and latency counts from the scheduled time, so queueing"
    " in the worker or the client is included, not hidden. The load generator is a lean HTTP/1.1 client on"
    " keep-alive connections (`loadtest/http.py`), so it takes little of the CPU the worker"
    " needs; its CPU per request is reported.",
    "Each request is a signed Meta notification with one text message from a registered driver: signature"
    " check, normalization, a Redis SET NX dedupe claim, a registry read, and a Kafka send with acks=all"
    " before the 200.",
    "The load generator, the worker, the broker and Redis share the machine's two cores; the load-average"
    " rows say whether anything else ran: figures are an upper bound on service latency.",
    "Worker CPU per webhook is the worker process's CPU time over the run divided by the requests: it does"
    " not depend on how busy the rest of the machine is, and 1000 / it is the most webhooks per second one"
    " worker core can take.",
    "The worker's Kafka client decodes metadata for every topic on the broker: on a broker holding"
    " thousands of test topics, that took about a third of a profiled worker's CPU (start-up and steady"
    " state not separated), so the topic count of the run is reported.",
)


def _bodies(prefix: str, count: int, drivers: int, app_secret: str) -> list[tuple[bytes, str]]:
    bodies = []
    for i in range(count):
        body = notification(f"wamid.{prefix}{i}", f"55119{i % drivers:08d}", "meus pedidos hoje")
        bodies.append((body, meta_signature(app_secret, body)))
    return bodies


def _requests(endpoint: str, bodies: list[tuple[bytes, str]]) -> list[bytes]:
    return [
        build_post(endpoint, body, {"X-Hub-Signature-256": signature, "Content-Type": "application/json"})
        for body, signature in bodies
    ]


def _percentile(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))] * 1000


def bench_webhooks(
    base: Settings, rates: tuple[float, ...] = (250.0, 500.0), seconds: float = 10.0, drivers: int = 50
) -> list[Result]:
    """Measure webhook latency percentiles at each of ``rates`` requests/s for ``seconds``."""
    settings = bench_settings(base, "webhooks")
    app_secret, hash_key = secrets.token_hex(16), secrets.token_hex(16)
    env = worker_env(settings, WHATSUP_WHATSAPP_APP_SECRET=app_secret, WHATSUP_PHONE_HASH_KEY=hash_key,
               WHATSUP_REDIS_URL=base.redis_url)  # fmt: skip
    with tempfile.TemporaryDirectory() as scratch:
        registry = Path(scratch) / "drivers.csv"
        rows = [f"bench-{i},+55119{i:08d},active,pt-BR" for i in range(drivers)]
        registry.write_text("driver_id,phone,status,language\n" + "\n".join(rows) + "\n")
        command = [sys.executable, "-m", "streams", "registry", "load", str(registry)]
        subprocess.run(command, env=env, cwd=PROJECT_ROOT, check=True, capture_output=True, timeout=60)
    url = f"http://127.0.0.1:{env['WHATSUP_WEB_PORT']}"
    worker = start_worker(env)
    results = []
    try:
        wait_healthy(url, worker)
        endpoint = f"{url}/webhooks/whatsapp"
        run = secrets.token_hex(4)  # fresh message ids: a rerun against the same Redis is not all duplicates
        asyncio.run(
            open_loop(endpoint, _requests(endpoint, _bodies(f"warm{run}-", 200, drivers, app_secret)), 100.0)
        )
        for rate in rates:
            count = int(rate * seconds)
            requests = _requests(endpoint, _bodies(f"run{run}-{rate:.0f}-", count, drivers, app_secret))
            cpu_before = cpu_seconds(worker.pid)
            loadgen_before = time.process_time()
            load_run = asyncio.run(open_loop(endpoint, requests, rate))
            loadgen_ms = (time.process_time() - loadgen_before) * 1000 / count
            latencies, errors, elapsed = load_run.latencies, load_run.errors, load_run.elapsed_s
            time.sleep(2.0)  # let the agents finish the events the requests produced
            cpu_ms = (cpu_seconds(worker.pid) - cpu_before) * 1000 / count
            ordered = sorted(latencies)
            load = f"{count:,} signed webhooks scheduled at {rate:.0f}/s, open loop"
            results += [
                Result(f"webhooks answered per second, {rate:.0f}/s offered", count / elapsed, "req/s", load),
                Result(f"answers other than 200, {rate:.0f}/s", errors, "requests", "target 0"),
                Result(f"webhook p50 latency, {rate:.0f}/s", _percentile(ordered, 0.50), "ms", ""),
                Result(f"webhook p99 latency, {rate:.0f}/s", _percentile(ordered, 0.99), "ms", P99_TARGET),
                Result(f"worker CPU per webhook, {rate:.0f}/s", cpu_ms, "ms", CPU_NOTE),
                Result(f"load generator CPU per request, {rate:.0f}/s", loadgen_ms, "ms", LOADGEN_NOTE),
                Result(f"machine load average (1 min) after {rate:.0f}/s", os.getloadavg()[0], "tasks", LOAD),
            ]  # fmt: skip
    finally:
        worker.terminate()
        try:
            worker.wait(60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
    topic_count = len(
        AdminClient({"bootstrap.servers": settings.kafka_bootstrap}).list_topics(timeout=10).topics
    )
    results.append(Result("topics on the broker during the run", topic_count, "topics", TOPICS_NOTE))
    return results


def run(settings: Settings, quick: bool) -> list[Result]:
    """Run the webhooks suite (quick: 3 s per rate instead of 10)."""
    return bench_webhooks(settings, seconds=3.0 if quick else 10.0)


SUITE = Suite("webhooks", "WhatsApp webhooks", run, NOTES)
