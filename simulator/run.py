"""Send a simulated fleet's pings through the real ingest API (as phones do) or straight to Kafka (for load).

Writes the ground truth next to it: ``truth.jsonl`` (every ping with its expected verdict) and
``summary.json`` (counts per verdict, overall and per driver).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from base.tokens import issue_driver_token
from schemas.codecs import codec
from simulator.model import DriverRun


@dataclass
class SendReport:
    """What a run sent and how the API answered."""

    pings: int = 0
    requests: int = 0
    retried: int = 0
    flagged_by_api: int = 0
    seconds: float = 0.0


def write_truth(runs: list[DriverRun], out_dir: Path) -> dict[str, Any]:
    """Write the expected verdict of every ping; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    overall: Counter[str] = Counter()
    per_driver: dict[str, Counter[str]] = {}
    with (out_dir / "truth.jsonl").open("w") as truth:
        for run in runs:
            counts = per_driver.setdefault(run.driver_id, Counter())
            for ping in run.pings():
                overall[ping.expected] += 1
                counts[ping.expected] += 1
                row = {
                    "driver_id": run.driver_id,
                    "ping_id": ping.payload["ping_id"],
                    "seq": ping.payload["seq"],
                    "expected": ping.expected,
                    "fault": ping.fault,
                }
                truth.write(json.dumps(row) + "\n")
    summary = {"expected": dict(overall), "per_driver": {d: dict(c) for d, c in per_driver.items()}}
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, sort_keys=True))
    return summary


async def _post_driver(
    client: httpx.AsyncClient, token: str, run: DriverRun, report: SendReport, max_retries: int
) -> None:
    for upload in run.uploads:
        body = {"pings": [ping.payload for ping in upload]}
        for attempt in range(max_retries + 1):
            answer = await client.post("/v1/pings", json=body, headers={"Authorization": f"Bearer {token}"})
            report.requests += 1
            if answer.status_code == 202:
                report.pings += len(upload)
                report.flagged_by_api += len(answer.json()["rejected"])
                break
            if answer.status_code in (429, 503) and attempt < max_retries:
                report.retried += 1
                await asyncio.sleep(min(float(answer.headers.get("Retry-After", "1")), 10.0))
                continue
            raise RuntimeError(
                f"POST /v1/pings for {run.driver_id} answered {answer.status_code}: {answer.text}"
            )


async def post_through_api(
    runs: list[DriverRun], base_url: str, token_secret: str, *, concurrency: int = 32, max_retries: int = 30
) -> SendReport:
    """Post every driver's uploads in order through ``POST /v1/pings``; drivers run in parallel."""
    report = SendReport()
    started = time.perf_counter()
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, timeout=30.0, limits=limits) as client:
        gate = asyncio.Semaphore(concurrency)

        async def one(run: DriverRun) -> None:
            async with gate:
                token = issue_driver_token(token_secret, run.driver_id, ttl_s=3600)
                await _post_driver(client, token, run, report, max_retries)

        await asyncio.gather(*(one(run) for run in runs))
    report.seconds = time.perf_counter() - started
    return report


def produce_to_kafka(runs: list[DriverRun], settings: Settings) -> SendReport:
    """Produce every ping straight to ``gps.pings.raw`` as the ingest API would, stamped on arrival."""
    report = SendReport()
    started = time.perf_counter()
    topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    encode = codec("GpsPing").encode
    producer = make_producer(settings, **{"linger.ms": 20, "batch.num.messages": 10_000})
    # Interleave drivers upload by upload, keeping each driver's own order, like a fleet would.
    rounds = max((len(run.uploads) for run in runs), default=0)
    for i in range(rounds):
        for run in runs:
            if i >= len(run.uploads):
                continue
            received = int(time.time() * 1000)
            for ping in run.uploads[i]:
                p = ping.payload
                record = {
                    "ping_id": p["ping_id"],
                    "driver_id": run.driver_id,
                    "device_ts": p["ts"],
                    "lat": p["lat"],
                    "lon": p["lon"],
                    "accuracy_m": p["accuracy_m"],
                    "speed_mps": p["speed_mps"],
                    "heading": p["heading"],
                    "battery": p["battery"],
                    "seq": p["seq"],
                    "source": "simulator",
                    "received_ts": received,
                }
                while True:
                    try:
                        producer.produce(topic, key=run.driver_id.encode(), value=encode(record))
                        break
                    except BufferError:
                        producer.poll(0.05)
                report.pings += 1
            report.requests += 1
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("Kafka did not acknowledge every simulated ping within 60 s")
    report.seconds = time.perf_counter() - started
    return report
