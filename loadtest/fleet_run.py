"""A whole fleet run: the pipeline's processes started for real, the fleet's load sent, everything checked.

Each run gets its own topics and consumer groups (a prefix and an app id), its own embedded ClickHouse and
ports. It starts ``ingest`` processes sharing one port (SO_REUSEPORT), ``worker`` processes and a ``sink``,
plans the fleet before any of them is busy, sends the load open loop from this process, samples the
consumer groups' backlog while it runs, waits for the pipeline to drain, then verifies and measures from the
records (``loadtest/verify.py``). CPU per ping is each process's CPU seconds over the measured window (after
the warm-up) divided by the pings the API accepted in that window.
"""

from __future__ import annotations

import asyncio
import collections
import os
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from confluent_kafka import Consumer, KafkaException

from base import topics
from base.kafka import CommittedOffsets, client_config, consumer_group_backlog, create_topics
from base.settings import Settings
from loadtest import verify
from loadtest.chaos import ChaosPlan
from loadtest.fleet import FleetConfig, plan
from loadtest.processes import Process, free_port, process_state
from loadtest.run import LoadReport, render, run_load, write_truth
from loadtest.soak import Soak, SoakFindings

BACKLOG_SAMPLE_S = 5.0


@dataclass(frozen=True)
class FleetRun:
    """What to run: the fleet, how long, and how many of each process."""

    fleet: FleetConfig
    warmup_s: float = 120.0
    ingest: int = 1
    workers: int = 1
    drain_timeout_s: float = 900.0
    # Seconds into the measured window at which as many workers and ingest processes again join (None: no).
    join_after_s: float | None = None
    # Workers split by role (WHATSUP_WORKER_ROLE): ``workers`` of the clean stage and as many of the
    # deliveries role, each role its own consumer group; otherwise ``workers`` running every agent.
    split_roles: bool = False
    # The chaos soak: faults on this plan during the measured window (loadtest/chaos.py), with the Meta
    # sandbox, a sender and ``messages_per_s`` WhatsApp messages for it besides the fleet's load.
    chaos: ChaosPlan | None = None
    messages_per_s: float = 20.0
    # ... and ``webhooks_per_s`` signed Meta notifications from ``webhook_drivers`` of the fleet's drivers.
    webhooks_per_s: float = 10.0
    webhook_drivers: int = 50

    @property
    def worker_roles(self) -> tuple[str, ...]:
        """The worker role of each worker process started first (and again when others join)."""
        return ("clean", "deliveries") * self.workers if self.split_roles else ("all",) * self.workers


@dataclass
class FleetOutcome:
    """Everything a fleet run measured and checked."""

    run: FleetRun
    load: LoadReport
    window: tuple[float, float] = (0.0, 0.0)
    pings_in_window: int = 0
    cpu_s: dict[str, float] = field(default_factory=dict)
    backlog: dict[str, list[tuple[float, int]]] = field(default_factory=dict)
    drained_s: float = float("nan")
    topics: verify.Accounting | None = None
    clickhouse: verify.Accounting | None = None
    verdict_s: list[float] = field(default_factory=list)
    fix_s: list[float] = field(default_factory=list)
    state_s: list[float] = field(default_factory=list)
    alert_s: list[float] = field(default_factory=list)
    alert_kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    visible: dict[str, float] = field(default_factory=dict)
    soak: SoakFindings | None = None
    # Workers started again after they left a stalled table recovery (see Restarter).
    restarts: list[str] = field(default_factory=list)

    def cpu_us_per_ping(self, name: str) -> float:
        """Microseconds of CPU per ping the process spent in the measured window."""
        return self.cpu_s[name] / max(1, self.pings_in_window) * 1e6


def _run_settings(base: Settings, label: str) -> Settings:
    run = uuid.uuid4().hex[:6]
    settings = replace(base, topic_prefix=f"fleet-{label}-{run}.", app_id=f"fleet-{label}-{run}")
    create_topics(settings)
    return settings


def _environment(settings: Settings, data_dir: Path, token_secret: str, api_key: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    env.update(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "WHATSUP_REDIS_URL": settings.redis_url,
            "WHATSUP_TOPIC_PREFIX": settings.topic_prefix,
            "WHATSUP_APP_ID": settings.app_id,
            "WHATSUP_PARTITIONS": str(settings.partitions),
            "WHATSUP_DATA_DIR": str(data_dir),
            "WHATSUP_CLICKHOUSE_URL": f"chdb://{data_dir / 'clickhouse'}",
            "WHATSUP_TOKEN_SECRET": token_secret,
            "WHATSUP_API_KEYS": f"{api_key}:ingest",
            "WHATSUP_LOG_LEVEL": "WARNING",
        }
    )
    return env


class Pipeline:
    """The processes of one run: a sink, workers, ingest processes sharing one port; more may join."""

    def __init__(self, settings: Settings, data_dir: Path, token_secret: str, api_key: str) -> None:
        self.env = _environment(settings, data_dir, token_secret, api_key)
        self.data_dir = data_dir
        self.ingest_port, self.sink_port = free_port(), free_port()
        self.processes: list[Process] = []

    def _add(self, role: str, env: dict[str, str], health: str, kind: str | None = None) -> Process:
        kind = kind or role
        count = sum(1 for p in self.processes if p.name.rsplit("-", 1)[0] == kind)
        name = role if role == "sink" else f"{kind}-{count + 1}"
        process = Process(name, role, env, health, self.data_dir)
        self.processes.append(process)
        return process

    def sink(self) -> Process:
        """A sink with its query endpoint on this run's sink port."""
        env = {**self.env, "WHATSUP_SINK_PORT": str(self.sink_port), "WHATSUP_WEB_PORT": str(free_port())}
        return self._add("sink", env, f"http://127.0.0.1:{self.sink_port}/health")

    def worker(self, role: str = "all") -> Process:
        """A worker of ``role`` (WHATSUP_WORKER_ROLE) with a web port of its own."""
        port = free_port()
        env = {
            **self.env,
            "WHATSUP_WEB_PORT": str(port),
            "WHATSUP_SINK_PORT": str(self.sink_port),
            "WHATSUP_WORKER_ROLE": role,
        }
        kind = "worker" if role == "all" else f"worker_{role}"
        return self._add("worker", env, f"http://127.0.0.1:{port}/health", kind)

    def ingest(self) -> Process:
        """An ingest process on the shared port."""
        env = {**self.env, "WHATSUP_INGEST_PORT": str(self.ingest_port)}
        return self._add("ingest", env, f"http://127.0.0.1:{self.ingest_port}/health")

    def sandbox(self) -> Process:
        """The Meta and Twilio sandboxes on ports of their own (the soak's WhatsApp provider)."""
        port = int(self.env["WHATSUP_SANDBOX_META_PORT"])
        return self._add("sandbox", self.env, f"http://127.0.0.1:{port}/health")

    def sender(self) -> Process:
        """A WhatsApp sender against the sandbox."""
        port = free_port()
        env = {**self.env, "WHATSUP_SENDER_METRICS_PORT": str(port)}
        return self._add("sender", env, f"http://127.0.0.1:{port}/health")

    @staticmethod
    def start(processes: list[Process]) -> None:
        """Start processes together and wait until each is healthy; stop them all if one is not."""
        for process in processes:
            process.start()
        try:
            for process in processes:
                process.wait_healthy()
        except BaseException:
            for process in processes:
                process.stop()
            raise


# The status a worker exits with when it leaves a stalled table recovery (streams/telemetry/recovery.py).
RECOVERY_STALLED_EXIT = os.EX_TEMPFAIL


class Restarter(threading.Thread):
    """Start again a worker that left a stalled table recovery (status 75), as its supervisor (compose's
    ``restart: unless-stopped``) would; any other exit is left for the run to report as a death.

    The CPU a restarted process used before it exited is kept (read from its zombie before reaping it), so
    the run's per-process CPU counts both lives.
    """

    def __init__(self, pipeline: Pipeline, say: Callable[[str], None]) -> None:
        super().__init__(name="fleet-restarter", daemon=True)
        self.pipeline, self.say = pipeline, say
        self.restarts: list[str] = []
        self.carried_cpu_s: dict[str, float] = collections.defaultdict(float)
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.wait(1.0):
            for process in list(self.pipeline.processes):
                if process.popen is None or process_state(process.popen.pid) != "Z":  # exited, not reaped
                    continue
                used = process.cpu_seconds()
                code = process.popen.wait()
                if code != RECOVERY_STALLED_EXIT or self.halt.is_set():
                    continue
                self.carried_cpu_s[process.name] += used
                self.restarts.append(f"{process.name} left a stalled table recovery (status {code})")
                self.say(f"fleet: {process.name} left a stalled table recovery; starting it again")
                process.start()

    def close(self) -> None:
        self.halt.set()
        self.join(30)


def start_pipeline(
    settings: Settings, run: FleetRun, data_dir: Path, token_secret: str, api_key: str
) -> Pipeline:
    """Start the sink, the workers and the ingest processes of a run."""
    pipeline = Pipeline(settings, data_dir, token_secret, api_key)
    if run.chaos is not None:
        pipeline.env.update(Soak.provider_env(pipeline.ingest_port))
    first = [pipeline.sink(), *(pipeline.worker(role) for role in run.worker_roles)]
    first += [pipeline.ingest() for _ in range(run.ingest)]
    if run.chaos is not None:
        first += [pipeline.sandbox(), pipeline.sender()]
    pipeline.start(first)
    return pipeline


class BacklogSampler(threading.Thread):
    """Sample each consumer group's backlog every few seconds while the load runs."""

    def __init__(self, settings: Settings, groups: list[str]) -> None:
        super().__init__(name="backlog-sampler", daemon=True)
        self.readers = {group: CommittedOffsets(settings, group) for group in groups}
        self.consumer = Consumer(client_config(settings, **{"group.id": "fleet-backlog"}))
        self.groups = groups
        self.samples: dict[str, list[tuple[float, int]]] = {g: [] for g in groups}
        self.halt = threading.Event()

    def sample(self) -> dict[str, int]:
        """Read every group's backlog now."""
        return {g: consumer_group_backlog(self.readers[g], self.consumer, g) for g in self.groups}

    def run(self) -> None:
        while not self.halt.wait(BACKLOG_SAMPLE_S):
            now = time.time()
            try:
                sampled = self.sample()
            except KafkaException:  # a broker restarting: the next sample will tell
                continue
            for group, backlog in sampled.items():
                self.samples[group].append((now, backlog))

    def close(self) -> None:
        self.halt.set()
        self.join(30)
        self.consumer.close()
        for reader in self.readers.values():
            reader.close()


def run_fleet(
    base: Settings,
    run: FleetRun,
    label: str,
    say: Callable[[str], None] = print,
    stack: dict[str, dict[str, str]] | None = None,
) -> FleetOutcome:
    """Run the fleet through a freshly started pipeline and return what was measured and checked; with a
    chaos plan, ``stack`` holds the environments of the broker's and Redis's scripts, to restart them."""
    settings = _run_settings(base, label)
    data_dir = base.data_dir / "bench" / settings.app_id
    token_secret, api_key = secrets.token_urlsafe(32), secrets.token_urlsafe(24)
    fleet = run.fleet
    say(
        f"fleet: planning {fleet.drivers:,} drivers x {fleet.minutes:g} min "
        f"({fleet.pings_per_s:,.0f} fixes/s)"
    )
    uploads = plan(fleet)
    pipeline = start_pipeline(settings, run, data_dir, token_secret, api_key)
    processes, port = pipeline.processes, pipeline.ingest_port
    group_roles = [topics.worker_group_role(role) for role in dict.fromkeys(run.worker_roles)] + ["sink"]
    groups = {role: topics.consumer_group(role, settings.app_id) for role in group_roles}
    sampler = BacklogSampler(settings, list(groups.values()))
    restarter = Restarter(pipeline, say) if run.chaos is None else None  # the soak restarts its own
    try:
        base_url = f"http://127.0.0.1:{port}"
        start_ms = int(time.time() * 1000) + 3_000
        requests = render(fleet, uploads, base_url, token_secret, api_key, start_ms)
        del uploads
        start_ms = max(start_ms, int(time.time() * 1000) + 1_000)
        say(f"fleet: {len(requests):,} requests rendered; load starts, warm-up {run.warmup_s:.0f} s")
        window_start = start_ms / 1000 + run.warmup_s
        cpu_start: dict[str, float] = {}

        def mark_window() -> None:
            cpu_start.update({p.name: p.cpu_seconds() for p in processes})
            cpu_start["loadgen"] = time.process_time()

        def join() -> None:
            joining = [pipeline.worker(role) for role in run.worker_roles]
            joining += [pipeline.ingest() for _ in range(run.ingest)]
            say(f"fleet: {', '.join(p.name for p in joining)} join the run")
            pipeline.start(joining)

        soak = None
        if restarter is not None:
            restarter.start()
        if run.chaos is not None:
            duration_s = fleet.minutes * 60 - run.warmup_s
            soak = Soak(
                settings,
                pipeline,
                run.chaos,
                stack or {},
                window_start,
                duration_s,
                run.messages_per_s,
                say,
                driver_ids=[fleet.driver_id(i) for i in range(min(run.webhook_drivers, fleet.drivers))],
                webhooks_per_s=run.webhooks_per_s,
            )
            soak.start()
        timers = [threading.Timer(max(0.0, window_start - time.time()), mark_window)]
        if run.join_after_s is not None:
            timers.append(threading.Timer(max(0.0, window_start + run.join_after_s - time.time()), join))
        for timer in timers:
            timer.start()
        sampler.start()
        load = asyncio.run(run_load(requests, base_url, warmup_s=run.warmup_s, progress=say))
        window_end = time.time()
        if soak is not None:
            soak.stop()
        for timer in timers:
            timer.join()
        cpu_end = {p.name: p.cpu_seconds() for p in processes}
        cpu_end["loadgen"] = time.process_time()
        outcome = FleetOutcome(run, load, (window_start, window_end))
        # A process that joined during the window spent all of its CPU in it.
        carried = restarter.carried_cpu_s if restarter is not None else {}
        outcome.cpu_s = {
            name: cpu_end[name] + carried.get(name, 0.0) - cpu_start.get(name, 0.0) for name in cpu_end
        }
        outcome.pings_in_window = len(load.accepted) - load.warmup_accepted
        dead = [p.name for p in processes if not p.alive()]
        if dead:
            raise RuntimeError(f"process(es) died during the load: {dead}")
        outcome.drained_s = _drain(sampler, run.drain_timeout_s, say)
        sampler.close()
        if restarter is not None:
            restarter.close()
            outcome.restarts = restarter.restarts
        outcome.backlog = {name: sampler.samples[group] for name, group in groups.items()}
        write_truth(load, data_dir / "truth")
        _verify(settings, processes[0], outcome, say)
        if soak is not None:
            outcome.soak = soak.findings(processes[0])
        return outcome
    finally:
        if sampler.is_alive():
            sampler.close()
        if restarter is not None and restarter.is_alive():
            restarter.close()
        for process in reversed(processes):
            process.stop()


def _drain(sampler: BacklogSampler, timeout_s: float, say: Callable[[str], None]) -> float:
    """Wait until every group has committed everything; return how long that took."""
    started = time.monotonic()
    backlog: dict[str, int] = {}
    while time.monotonic() - started < timeout_s:
        try:
            backlog = sampler.sample()
        except KafkaException:  # a group coordinator moving: ask again
            backlog = {}
        if backlog and all(v == 0 for v in backlog.values()):
            return time.monotonic() - started
        time.sleep(1.0)
    say(f"fleet: backlog not drained within {timeout_s:.0f} s: {backlog}")
    return float("inf")


def _verify(settings: Settings, sink: Process, outcome: FleetOutcome, say: Callable[[str], None]) -> None:
    clean_topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    rejected_topic = topics.qualified(topics.GPS_PINGS_REJECTED, settings.topic_prefix)
    say("fleet: reading the verdict topics")
    found = verify.read_verdicts(settings, clean_topic, rejected_topic, outcome.window)
    outcome.verdict_s, outcome.reasons = found.verdict_latency_s, found.reasons
    outcome.fix_s = found.fix_latency_s
    unconfirmed = outcome.load.unconfirmed
    outcome.topics = verify.account(outcome.load.accepted, found.clean, found.rejected, unconfirmed)
    say("fleet: reading driver states and alerts")
    changelog = f"{settings.app_id}-driver_state-changelog"
    outcome.state_s = verify.state_latencies(settings, changelog, found.clean_ts, outcome.window)
    alerts_topic = topics.qualified(topics.ALERTS, settings.topic_prefix)
    outcome.alert_s, outcome.alert_kinds = verify.alert_latencies(settings, alerts_topic, outcome.window)
    say("fleet: asking ClickHouse")
    query_settings = replace(settings, sink_port=int(sink.env["WHATSUP_SINK_PORT"]))
    clean_rows, rejected_rows = verify.clickhouse_counts(query_settings)
    outcome.clickhouse = verify.account(outcome.load.accepted, clean_rows, rejected_rows, unconfirmed)
    outcome.visible = verify.visible_latencies(query_settings, outcome.window)
