"""The ``pings`` suite: the ping stages on the local stack.

Every ratio is measured side by side in one run on one machine, because shared machines are noisy:
- clean-stage throughput on a pre-loaded topic against a bare aiokafka ``getmany`` drain of the same topic;
- ingest API throughput in 100-ping batches, with latency percentiles;
- driver state per active driver, from a run with 20,000 simulated drivers.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Consumer
from confluent_kafka import TopicPartition as CTopicPartition

from base import topics
from base.settings import PROJECT_ROOT, Settings
from base.tokens import issue_driver_token
from benches.harness import Result, Suite, bench_settings, load_average, start_worker, worker_env
from schemas.codecs import codec
from simulator.model import Faults, SimConfig, simulate
from simulator.run import produce_to_kafka
from streams.pings import rules
from streams.pings.state import DriverPingState
from streams.unpacked import UnpackedStates


async def _raw_drain(settings: Settings, topic: str, total: int) -> float:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=4 * 2**20,
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(settings.partitions)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        seen, started = 0, time.perf_counter()
        while seen < total:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            seen += sum(len(records) for records in batch.values())
        return seen / (time.perf_counter() - started)
    finally:
        await consumer.stop()


def _output_span(settings: Settings, total: int, timeout_s: float) -> tuple[int, float, float]:
    """Wait for ``total`` verdicts; return how many came, and the times (epoch s) of the first and last."""
    names = [
        topics.qualified(t, settings.topic_prefix)
        for t in (topics.GPS_PINGS_CLEAN, topics.GPS_PINGS_REJECTED)
    ]
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"span-{uuid.uuid4().hex}"}
    )
    assignment = [
        CTopicPartition(n, p, 0)
        for n in names
        for p in consumer.list_topics(n, timeout=10).topics[n].partitions
    ]
    consumer.assign(assignment)
    first, last, seen = float("inf"), 0.0, 0
    deadline = time.monotonic() + timeout_s
    try:
        while seen < total and time.monotonic() < deadline:
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error():
                    continue
                stamp = message.timestamp()[1] / 1000
                first, last, seen = min(first, stamp), max(last, stamp), seen + 1
    finally:
        consumer.close()
    return seen, first, last


class _CpuSampler:
    """Sample the CPU seconds of some processes in the background, to read the CPU spent in a time span."""

    def __init__(self, pids: list[int], every_s: float = 0.2) -> None:
        self.pids, self.every_s = pids, every_s
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        total = 0.0
        for pid in self.pids:
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._cpu()))
            self._stop.wait(self.every_s)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def between(self, start: float, end: float) -> float:
        """CPU seconds spent from ``start`` to ``end`` (epoch seconds), from the samples around them."""
        before = [c for t, c in self.samples if t <= start] or [self.samples[0][1]]
        after = [c for t, c in self.samples if t >= end] or [self.samples[-1][1]]
        return after[0] - before[-1]


def _run_clean_stage(
    base: Settings, runs: list[Any], workers: int, role: str = "all"
) -> tuple[Settings, int, float, float]:
    """Load a fresh topic with the fleet's pings, judge them with ``workers`` workers of ``role``.

    Returns the settings, the pings, the rate from first to last verdict, and the workers' CPU seconds per
    ping over that span (a rate a shared machine cannot distort much).
    """
    settings = bench_settings(base, f"clean{workers}{role}")
    produced = produce_to_kafka(runs, settings).pings
    processes = []
    for i in range(workers):
        env = worker_env(settings)
        env["WHATSUP_DATA_DIR"] += f"-{i}"
        env["WHATSUP_WORKER_ROLE"] = role
        processes.append(start_worker(env))
    sampler = _CpuSampler([p.pid for p in processes])
    try:
        seen, first, last = _output_span(settings, produced, timeout_s=900)
    finally:
        sampler.stop()
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    if seen < produced:
        raise RuntimeError(f"{workers} worker(s) judged only {seen} of {produced} pings; see var/bench/")
    span = last - first
    return settings, produced, seen / span if span > 0 else 0.0, sampler.between(first, last) / seen


# The clean stage's target in a process of its own: CPU per ping on a pre-loaded topic.
CLEAN_STAGE_TARGET_US = 140.0


def bench_pure_stage(runs: list[Any], received_ms: int) -> tuple[float, float]:
    """Pings per CPU second of the stage's own work, and of its Avro work alone; no Kafka, no Faust.

    The stage's work: decode, judge, encode and pack. Its Avro work: decoding every raw ping and encoding
    every verdict the stage gave, with the same codecs, nothing else.
    """
    from streams.pings import agents  # the Faust app: imported only when this suite runs

    gps_ping = codec("GpsPing")
    events: list[SimpleNamespace] = []
    for run in runs:
        for ping in run.pings():
            p = ping.payload
            record = {
                **{k: p[k] for k in ("ping_id", "lat", "lon", "accuracy_m", "speed_mps", "heading")},
                **{"battery": p["battery"], "seq": p["seq"], "driver_id": run.driver_id},
                **{"device_ts": p["ts"], "source": "simulator", "received_ts": received_ms},
            }
            message = SimpleNamespace(
                topic="raw", partition=0, offset=len(events), timestamp=received_ms / 1000
            )
            value = gps_ping.encode(record)
            events.append(SimpleNamespace(key=run.driver_id.encode(), value=value, message=message))
    store: dict[bytes, bytes] = {}
    unpacked = UnpackedStates(store.get, DriverPingState.unpack)  # as the agent keeps its states
    batches = []  # each batch's verdicts, kept for the Avro timing below
    started = time.process_time()
    for i in range(0, len(events), agents.BATCH_SIZE):
        states: dict[str, DriverPingState] = {}
        batches.append(agents.judge_batch(events[i : i + agents.BATCH_SIZE], unpacked.load, states))
        agents.encode_results(batches[-1])
        for key, state in states.items():
            packed = store[key.encode()] = state.pack()
            unpacked.keep(key.encode(), packed, state)
    stage = len(events) / (time.process_time() - started)
    started = time.process_time()
    for event in events:
        gps_ping.decode(event.value)
    for verdicts in batches:
        agents.encode_results(verdicts)
    return stage, len(events) / (time.process_time() - started)


def bench_clean_stage(base: Settings, drivers: int, minutes: float) -> list[Result]:
    """Clean-stage pings/s on a pre-loaded topic, beside a raw aiokafka drain and a do-nothing Faust agent."""
    end_ms = int(time.time() * 1000)
    runs = simulate(SimConfig(drivers=drivers, minutes=minutes, end_ms=end_ms, seed=3, driver_prefix="b"))
    settings, produced, clean, cpu_one = _run_clean_stage(base, runs, workers=1)
    raw_topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    drain = statistics.mean([asyncio.run(_raw_drain(settings, raw_topic, produced)) for _ in range(2)])
    ceiling = _faust_ceiling(settings, raw_topic, produced)
    _, _, clean_two, cpu_two = _run_clean_stage(base, runs, workers=2)
    _, _, clean_alone, cpu_alone = _run_clean_stage(base, runs, workers=1, role="clean")
    pure, avro = bench_pure_stage(runs, received_ms=end_ms + 5_000)
    return [
        Result("raw aiokafka getmany drain", drain, "pings/s", "mean of 2 drains"),
        Result(
            "do-nothing Faust agent (ack only)",
            ceiling,
            "pings/s",
            "same topic, Faust's own consumer loop: its per-message cost",
        ),
        Result(
            "clean_pings stage, 1 worker",
            clean,
            "pings/s",
            f"{produced:,} pings of {drivers:,} drivers, first to last verdict",
        ),
        Result("clean_pings stage, 2 workers", clean_two, "pings/s", "same pings, 6 partitions shared"),
        Result("clean stage (best of 1 and 2 workers) / raw drain", max(clean, clean_two) / drain, "ratio"),
        Result("clean stage (1 worker) / do-nothing Faust agent", clean / ceiling, "ratio"),
        Result("worker CPU per ping, 1 worker", cpu_one * 1e6, "us", "process CPU s / pings, same span"),
        Result("worker CPU per ping, 2 workers", cpu_two * 1e6, "us", "both processes"),
        Result(
            "clean stage alone, 1 worker (role clean)",
            clean_alone,
            "pings/s",
            "WHATSUP_WORKER_ROLE=clean: no agent downstream of the verdicts in the process",
        ),
        Result(
            "clean stage alone, CPU per ping",
            cpu_alone * 1e6,
            "us",
            f"the role-clean worker, same span rule; target <= {CLEAN_STAGE_TARGET_US:.0f}",
        ),
        Result(
            "stage work alone, one core",
            pure,
            "pings/CPU s",
            "decode + rules + encode + pack in-process, no Kafka, no Faust",
        ),
        Result(
            "stage work alone x 2 cores / raw drain",
            2 * pure / drain,
            "ratio",
            "upper bound of any per-message Python consumer here",
        ),
        Result(
            "Avro work alone, one core",
            avro,
            "pings/CPU s",
            "fastavro: decode every raw ping, encode every verdict; nothing else",
        ),
        Result(
            "Avro work alone x 2 cores / raw drain",
            2 * avro / drain,
            "ratio",
            "upper bound of any stage that reads and writes these Avro records",
        ),
    ]


def _faust_ceiling(settings: Settings, topic: str, total: int) -> float:
    app = f"ceiling-{uuid.uuid4().hex[:6]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    env.update(
        BENCH_CEILING_TOPIC=topic,
        BENCH_CEILING_TOTAL=str(total),
        BENCH_CEILING_APP=app,
        BENCH_CEILING_DATADIR=str(settings.data_dir / "bench" / app),
        BENCH_CEILING_BOOTSTRAP=settings.kafka_bootstrap,
        BENCH_CEILING_PORT=str(settings.web_port + 101),
    )
    out = subprocess.run(
        [sys.executable, "-m", "faust", "-A", "benches.ceiling_app", "worker", "-l", "warn"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    for line in out.stdout.splitlines():
        if line.startswith("CEILING "):
            return float(line.split()[1])
    raise RuntimeError(f"the ceiling app reported nothing:\n{out.stderr[-2000:]}")


async def _post_batches(url: str, secret: str, drivers: int, batches: int, size: int) -> list[float]:
    now = int(time.time() * 1000)
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=drivers, max_keepalive_connections=drivers)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def phone(d: int) -> None:
            headers = {"Authorization": f"Bearer {issue_driver_token(secret, f'api-{drivers}-{d}', 3600)}"}
            for b in range(batches):
                pings = [
                    {
                        "ping_id": f"api-{d}:{b * size + i}",
                        "seq": b * size + i,
                        "ts": now - (batches * size - b * size - i) * 1000,  # in the past, within the horizon
                        "lat": -23.55 + i * 1e-5,
                        "lon": -46.63,
                        "accuracy_m": 5.0,
                    }
                    for i in range(size)
                ]
                started = time.perf_counter()
                answer = await client.post("/v1/pings", json={"pings": pings}, headers=headers)
                latencies.append(time.perf_counter() - started)
                if answer.status_code != 202:
                    raise RuntimeError(f"ingest answered {answer.status_code}: {answer.text}")

        await asyncio.gather(*(phone(d) for d in range(drivers)))
    return latencies


def bench_ingest(base: Settings, phones: tuple[int, ...], batches: int, size: int = 100) -> list[Result]:
    """Pings/s through POST /v1/pings in ``size``-ping batches from concurrent phones, and latency.

    Each load level runs against the same worker; the load generator shares the machine's two cores.
    """
    settings = bench_settings(base, "ingest")
    secret = uuid.uuid4().hex
    env = worker_env(
        settings, WHATSUP_TOKEN_SECRET=secret, WHATSUP_INGEST_RATE_PER_S="1000", WHATSUP_INGEST_BURST="1000"
    )
    url = f"http://127.0.0.1:{env['WHATSUP_WEB_PORT']}"
    worker = start_worker(env)
    results = []
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        asyncio.run(_post_batches(url, secret, 4, 2, size))  # warm-up: connections, producer
        for drivers in phones:
            started = time.perf_counter()
            latencies = sorted(asyncio.run(_post_batches(url, secret, drivers, batches, size)))
            elapsed = time.perf_counter() - started
            total = drivers * batches * size
            load = f"{drivers} phones x {batches} batches of {size}"
            results += [
                Result(f"ingest API, {drivers} phones", total / elapsed, "pings/s", f"{load}, acks=all"),
                Result(
                    f"ingest API p50 latency, {drivers} phones", latencies[len(latencies) // 2] * 1000, "ms"
                ),
                Result(
                    f"ingest API p99 latency, {drivers} phones",
                    latencies[int(len(latencies) * 0.99) - 1] * 1000,
                    "ms",
                ),
            ]
    finally:
        worker.terminate()
        worker.wait(60)
    return results


def bench_state_memory(
    drivers: int = 20_000, pings_per_driver: int = 120, long: bool = False
) -> list[Result]:
    """Bytes of driver state per active driver: packed (what the table and changelog hold) and traced.

    ``long``: phones pinging every second whose offline backlogs (up to 400 pings) arrive shuffled with a
    tenth of them lost, then replayed: the most fragmented seq patterns the simulator makes.
    """
    faults = replace(Faults(), too_old=0.0)
    if long:
        faults = replace(faults, offline=1.0, shuffle=1.0, replay=1.0, lost=0.1)
    interval = 1.0 if long else 5.0
    config = SimConfig(
        drivers=drivers,
        minutes=pings_per_driver * interval / 60,
        interval_s=interval,
        end_ms=1_790_000_000_000,
        seed=9,
        max_gap_ticks=400 if long else 100,
        faults=faults,
    )
    runs = simulate(config)
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    table: dict[bytes, bytes] = {}
    rule_config = rules.RuleConfig()
    for run in runs:
        state = DriverPingState()
        for sim in run.pings():
            p = sim.payload
            ping: dict[str, Any] = {
                **p,
                "driver_id": run.driver_id,
                "device_ts": p["ts"],
                "source": "app",
                "received_ts": 1_790_000_001_000,
            }
            rules.evaluate(ping, state, rule_config, 0)
        table[run.driver_id.encode()] = state.pack()
    traced = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    packed = [len(v) for v in table.values()]
    label = "long shuffled backlogs" if long else "every fault"
    what = f"{drivers:,} drivers, {pings_per_driver} pings each, {label}"
    return [
        Result(f"driver state, packed, mean ({label})", statistics.mean(packed), "bytes", what),
        Result(f"driver state, packed, max ({label})", max(packed), "bytes", "target at most 4096"),
        Result(
            f"driver state in memory ({label}; key + value + dict slot)",
            traced / drivers,
            "bytes/driver",
            "tracemalloc",
        ),
    ]


PING_NOTES = [
    "The machine is shared with other workstreams: the load-average rows say how busy it was when the"
    " suite started and ended. Rates move with that load; CPU seconds per ping and the ratios measured side"
    " by side in the same run move much less.",
    "`stage work alone` is the clean stage's own work per CPU second, measured in-process on the same"
    " pings: Avro decode, the rules, Avro encode of the verdict, packing the driver states; no Kafka, no"
    " Faust. Twice that (both cores, nothing left for the broker, librdkafka or the consumer loop) over the"
    " raw drain is the most any per-message Python consumer of this design can reach. Its inverse is the"
    " floor under the clean stage's CPU per ping in a worker, which adds the consumer loop and the produce.",
    "`clean stage alone` is a worker of role `clean` (`WHATSUP_WORKER_ROLE`): the clean stage with no agent"
    " downstream of its verdicts in the process, its CPU per ping over the same span as the other workers;"
    f" the target is {CLEAN_STAGE_TARGET_US:.0f} us. The one- and two-worker rows run every agent, as the"
    " default worker does.",
    "`Avro work alone` is the part of that work no design of the stage can drop while the topics carry"
    " Avro: fastavro decoding each raw ping and encoding each verdict, on the same pings. Twice that over"
    " the raw drain bounds any stage reading and writing these records in Python with fastavro, the"
    " project's Avro library, whatever its consumer loop, rules or state.",
    "The worker runs Faust's consumer loop with an inline fast path (`streams/pings/fastdrain.py`): a"
    " message whose delivery need not wait is handed over without the four tasks Faust's"
    " `wait_first(callback, suspend_flow.wait())` creates; the do-nothing agent row uses Faust's stock loop,"
    " so the clean stage can exceed it.",
    "Throughput scales with workers, up to one per partition: compare the one- and two-worker rows.",
    "The ingest load generator runs on the same two cores as the worker and the broker, so the higher load"
    " level measures a saturated machine; its latencies are queueing, not service time.",
    "Driver state is measured on the packed bytes the table and its changelog hold, after a simulated run"
    " with every fault; the in-memory figure adds the key and the dict slot. The long-backlog rows use"
    " phones pinging every second with offline gaps of up to 400 pings, shuffled, a tenth of them lost.",
]


def run(settings: Settings, quick: bool) -> list[Result]:
    results = [load_average("suite start")]
    results += bench_state_memory(2_000 if quick else 20_000)
    results += bench_state_memory(100 if quick else 500, pings_per_driver=2_400, long=True)
    results += bench_clean_stage(settings, drivers=200 if quick else 2_000, minutes=10 if quick else 30)
    results += bench_ingest(settings, phones=(2, 10) if quick else (4, 40), batches=5 if quick else 50)
    return [*results, load_average("suite end")]


SUITE = Suite("pings", "Ping ingestion and cleaning", run, tuple(PING_NOTES))
