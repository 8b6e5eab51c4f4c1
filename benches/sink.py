"""Benchmarks of the ClickHouse sink (suite ``sink``), side by side in one run on one engine.

- throughput: a topic pre-loaded with CleanPings drained into the embedded engine by the sink (consume,
  stage, insert with its views and audit, commit), against a bare clickhouse-connect ``insert`` of the same
  rows, already decoded in Python, into the same table of a second database, as many rows per call as the
  sink's batches of a backlog (``WHATSUP_SINK_BACKLOG_BATCH_SIZE``);
- freshness: pings produced at a steady rate with their event time set at production, and the delay from
  that event time to the row being visible (``inserted_at``) in ClickHouse, p50 and p99.
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import resource
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from base import topics
from base.kafka import create_topics, make_producer
from base.settings import Settings
from benches.harness import Result, Suite
from schemas.codecs import codec
from sinks import metrics
from sinks.clickhouse import ClickHouseSink
from sinks.engine import make_client
from sinks.migrate import apply_migrations
from sinks.runner import SinkRunner

BARE_COLUMNS = [
    "ping_id",
    "driver_id",
    "device_ts",
    "lat",
    "lon",
    "accuracy_m",
    "speed_mps",
    "heading",
    "battery",
    "seq",
    "source",
    "received_ts",
    "processed_ts",
    "h3_r9",
    "h3_r7",
    "step_m",
    "derived_speed_mps",
    "late",
    "_partition",
    "_offset",
]


def _settings(base: Settings, label: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    directory = base.data_dir / "bench" / f"sink-{label}-{run}"
    settings = replace(
        base,
        topic_prefix=f"bench-sink-{label}-{run}.",
        app_id=f"bench-sink-{label}-{run}",
        clickhouse_url=f"chdb://{directory / 'clickhouse'}",
    )
    create_topics(settings)
    return settings


def _ping(driver: int, seq: int, ts: int) -> dict[str, Any]:
    return {
        "ping_id": f"b{driver}:{seq}",
        "driver_id": f"b{driver}",
        "device_ts": ts,
        "lat": -23.55 + seq * 1e-5,
        "lon": -46.63 + driver * 1e-4,
        "accuracy_m": 8.0,
        "speed_mps": 7.0,
        "heading": 90.0,
        "battery": 70.0,
        "seq": seq,
        "source": "simulator",
        "received_ts": ts + 150,
        "h3_r9": 0x89A8100C6BFFFFF,
        "h3_r7": 0x87A8100C6FFFFFF,
        "step_m": 35.0,
        "derived_speed_mps": 7.0,
        "late": False,
        "processed_ts": ts + 250,
    }


def _rows_written() -> float:
    # Only the sink's own counter: collecting the whole registry a hundred times a second would cost the
    # process (and its GIL) as much CPU as the sink it measures.
    for family in metrics.ROWS.collect():
        for sample in family.samples:
            if sample.name == "whatsup_sink_rows_total" and sample.labels == {"table": "gps_pings"}:
                return sample.value
    return 0.0


def _run_sink(settings: Settings, sink: ClickHouseSink, until_rows: float, timeout_s: float) -> float:
    """Run a SinkRunner until ``until_rows`` more rows are written; return seconds since its assignment."""
    runner = SinkRunner(settings, sink)
    thread = threading.Thread(target=runner.run, daemon=True)
    target = _rows_written() + until_rows
    thread.start()
    try:
        if not runner.ready.wait(60):
            raise RuntimeError("the sink got no partitions within 60 s")
        started = time.perf_counter()
        deadline = started + timeout_s
        while _rows_written() < target:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"the sink wrote {_rows_written():,.0f} of {target:,.0f} rows in time")
            time.sleep(0.01)
        return time.perf_counter() - started
    finally:
        runner.stop()
        thread.join(60)


def bench_throughput(base: Settings, rows: int) -> list[Result]:
    """Sink rows/s from a pre-loaded topic, beside a bare clickhouse-connect insert of the same rows."""
    settings = _settings(base, "tput")
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    encode = codec("CleanPing").encode
    now = int(time.time() * 1000) - 3_600_000
    drivers = 500
    pings = [_ping(i % drivers, i // drivers, now + i) for i in range(rows)]
    producer = make_producer(settings, **{"linger.ms": 50, "batch.num.messages": 10_000})
    for p in pings:
        while True:
            try:
                producer.produce(topic, encode(p), p["driver_id"].encode())
                break
            except BufferError:
                producer.poll(0.05)
    producer.flush(120)

    client = make_client(settings)
    try:
        sink = ClickHouseSink(client, settings)
        sink.start()
        sink_s = _run_sink(settings, sink, rows, timeout_s=600)
        client.command("CREATE DATABASE IF NOT EXISTS bare")
        bare = make_client(settings, database="bare")
        apply_migrations(bare)
        utc = dt.UTC
        data = [
            [
                *(p[c] for c in BARE_COLUMNS[:2]),
                dt.datetime.fromtimestamp(p["device_ts"] / 1000, utc),
                *(p[c] for c in BARE_COLUMNS[3:11]),
                dt.datetime.fromtimestamp(p["received_ts"] / 1000, utc),
                dt.datetime.fromtimestamp(p["processed_ts"] / 1000, utc),
                *(p[c] for c in BARE_COLUMNS[13:18]),
                i % settings.partitions,
                i,
            ]
            for i, p in enumerate(pings)
        ]
        started = time.perf_counter()
        for chunk in range(0, rows, settings.sink_backlog_batch_size):
            bare.insert(
                "gps_pings", data[chunk : chunk + settings.sink_backlog_batch_size], column_names=BARE_COLUMNS
            )
        bare_s = time.perf_counter() - started
        landed = client.query("SELECT count() FROM gps_pings").result_rows[0][0]
        bare.close()
    finally:
        client.close()
    if landed != rows:
        raise RuntimeError(f"the sink wrote {landed} rows of {rows}")
    sink_rate, bare_rate = rows / sink_s, rows / bare_s
    return [
        Result("sink: pre-loaded topic -> embedded ClickHouse", sink_rate, "rows/s", f"{rows:,} CleanPings"),
        Result(
            "bare clickhouse-connect insert, same rows",
            bare_rate,
            "rows/s",
            f"decoded beforehand, batches of {settings.sink_backlog_batch_size:,}",
        ),
        Result("sink / bare insert", sink_rate / bare_rate, "ratio", "target at least 0.8"),
    ]


def produce_paced(settings: Settings, topic: str, rate: int, total: int) -> None:
    """Produce ``total`` CleanPings at ``rate`` per second, each stamped with its event time as it goes."""
    encode = codec("CleanPing").encode
    producer = make_producer(settings, **{"linger.ms": 5})
    started = time.perf_counter()
    for i in range(total):
        ahead = started + i / rate - time.perf_counter()
        if ahead > 0:
            time.sleep(ahead)
        ping = _ping(i % 1000, i // 1000, int(time.time() * 1000))
        producer.produce(topic, encode(ping), ping["driver_id"].encode())
        producer.poll(0)
    producer.flush(60)


def bench_freshness(base: Settings, rate: int, seconds: float) -> list[Result]:
    """Event time to visible in ClickHouse, at ``rate`` pings/s for ``seconds``."""
    settings = _settings(base, "fresh")
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    total = int(rate * seconds)
    client = make_client(settings)
    try:
        sink = ClickHouseSink(client, settings)
        sink.start()

        # Another process produces, as phones and the worker would: in this one it would share the GIL.
        producer_process = multiprocessing.get_context("spawn").Process(
            target=produce_paced, args=(settings, topic, rate, total), daemon=True
        )
        runner = SinkRunner(settings, sink)
        sink_thread = threading.Thread(target=runner.run, daemon=True)
        sink_thread.start()
        runner.ready.wait(60)
        cpu_before = _cpu_seconds()
        producer_process.start()
        producer_process.join(seconds * 5 + 60)
        deadline = time.monotonic() + 60
        while client.query("SELECT count() FROM gps_pings").result_rows[0][0] < total:
            if time.monotonic() > deadline:
                break
            time.sleep(1.0)
        cpu_s = _cpu_seconds() - cpu_before
        runner.stop()
        sink_thread.join(60)
        ((p50, p99, worst, landed),) = client.query(
            "SELECT quantileExact(0.5)(d), quantileExact(0.99)(d), max(d), count() FROM"
            " (SELECT dateDiff('millisecond', device_ts, inserted_at) / 1000 AS d FROM gps_pings)"
        ).result_rows
    finally:
        client.close()
    note = (
        f"{landed:,} pings at {rate:,}/s for {seconds:.0f} s, flush every {settings.sink_flush_interval_s} s"
    )
    return [
        Result("freshness p50 (event time -> visible)", float(p50), "s", note),
        Result("freshness p99 (event time -> visible)", float(p99), "s", "target under 2 s"),
        Result("freshness max", float(worst), "s"),
        Result(
            "sink CPU per row at that rate",
            cpu_s / max(landed, 1) * 1e6,
            "us",
            f"{settings.partitions} partitions; the process's CPU while the pings flowed and landed",
        ),
    ]


def _cpu_seconds() -> float:
    """Return this process's CPU time so far (every thread, the embedded engine's included)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run_sink_suite(settings: Settings, quick: bool) -> list[Result]:
    """Run the sink's benchmarks (smaller with ``quick``)."""
    results = bench_throughput(settings, rows=30_000 if quick else 600_000)
    results += bench_freshness(settings, rate=10_000, seconds=5 if quick else 20)
    cores = os.cpu_count() or 1
    results.append(
        Result(
            "machine load average (1 min), end of run",
            os.getloadavg()[0],
            "processes",
            f"{cores} cores shared with other builds and test runs",
        )
    )
    return results


SINK_NOTES = (
    "The sink does not decode Avro in Python: record bodies written with the current schema are passed to"
    " ClickHouse as one Avro container file per batch, so its cost is consuming, framing and the engine's"
    " own work (decode, the staging view, the event table, two aggregates and the offset audit).",
    "The bare insert starts from rows already decoded into Python lists and feeds only the event table and"
    " its aggregates; it does no Kafka work and no commits.",
    "Freshness is measured from the event time stamped at production to `inserted_at` (the row's insert"
    " time, when it becomes visible to queries): it includes Kafka, the flush interval and the insert.",
    "The machine may be shared with other builds and test runs (see the load average), so absolute rates"
    " vary between runs; ratios are measured side by side in one run.",
)


SUITE = Suite("sink", "ClickHouse sink", run_sink_suite, SINK_NOTES)
