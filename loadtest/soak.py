"""The chaos soak's side of a fleet run: the faults, a WhatsApp message load for the sender, and the checks
only faults call for.

While the fleet's pings and delivery events flow, ``Soak`` runs the chaos plan (a worker killed with
SIGKILL and started again every 30 s, the broker restarted, the sink's engine down, Redis down, the Meta
sandbox answering 5xx) and produces WhatsApp messages with unique keys. ``findings`` then checks, besides
what every fleet run checks (each accepted ping once in the topics and in ClickHouse): every message the
broker acknowledged reached the Meta sandbox exactly once, by the sandbox's own log; no alert was raised
twice under different ids; every repair worked; and a negative control, a consumer that commits before it
writes, is caught losing records by the same accounting.
"""

from __future__ import annotations

import collections
import contextlib
import os
import random
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Consumer

from base import topics
from base.kafka import client_config, make_producer
from base.settings import PROJECT_ROOT, Settings
from loadtest import verify
from loadtest.chaos import Chaos, ChaosPlan, Fault, plan_faults
from loadtest.processes import Process, free_port
from loadtest.soak_webhooks import WebhookFindings, WebhookLoad, register_drivers
from schemas.codecs import codec
from sinks.query import run_query

SANDBOX_TOKEN, SANDBOX_NUMBER_ID = "soak-token-" + "t" * 24, "100000000000777"
SANDBOX_SECRET = "soak-" + "s" * 27
PHONE_HASH_KEY = "soak-phone-hash-" + "k" * 16
ALERTS_TWICE = (
    "SELECT count() AS n FROM (SELECT driver_id, kind, started_at FROM alerts"
    " GROUP BY driver_id, kind, started_at HAVING uniqExact(alert_id) > 1)"
)


@dataclass
class SoakFindings:
    """What the faults did and what the soak found after them."""

    faults: list[tuple[float, str, str]] = field(default_factory=list)
    repair_errors: list[str] = field(default_factory=list)
    messages_acked: int = 0
    messages_unconfirmed: int = 0
    messages_lost: int = 0
    messages_twice: int = 0
    twice_keys: list[str] = field(default_factory=list)  # the first few, to look for in the sender's log
    alerts_twice: int = 0
    tracebacks: dict[str, int] = field(default_factory=dict)
    # Processes that exited on their own and were started again, as the deployment's supervisor does.
    restarts: list[str] = field(default_factory=list)
    control_lost: int = 0
    webhooks: WebhookFindings = field(default_factory=WebhookFindings)

    @property
    def ok(self) -> bool:
        """Nothing lost or doubled, every repair done, and the negative control caught."""
        return (
            not self.repair_errors
            and self.messages_lost == 0
            and self.messages_twice == 0
            and self.alerts_twice == 0
            and self.webhooks.ok
            and self.control_lost > 0
        )


class Soak:
    """The faults and the message load of one soak, over a started pipeline."""

    @staticmethod
    def provider_env(ingest_port: int) -> dict[str, str]:
        """The sandbox's and the sender's shared environment: credentials, ports, patient retries, and the
        sandbox's signed status callbacks to the ingest processes' webhook, as Meta posts them: the proof
        the sender waits for before it resends a message whose send a crash left unconfirmed."""
        meta = free_port()
        return {
            "WHATSUP_WHATSAPP_TOKEN": SANDBOX_TOKEN,
            "WHATSUP_WHATSAPP_PHONE_NUMBER_ID": SANDBOX_NUMBER_ID,
            "WHATSUP_WHATSAPP_APP_SECRET": SANDBOX_SECRET,
            "WHATSUP_PHONE_HASH_KEY": PHONE_HASH_KEY,
            "WHATSUP_WHATSAPP_API_URL": f"http://127.0.0.1:{meta}",
            "WHATSUP_SANDBOX_META_PORT": str(meta),
            "WHATSUP_SANDBOX_TWILIO_PORT": str(free_port()),
            "WHATSUP_SANDBOX_PAGERDUTY_PORT": str(free_port()),
            "WHATSUP_SANDBOX_CALLBACKS": "true",
            "WHATSUP_SANDBOX_CALLBACK_URL": f"http://127.0.0.1:{ingest_port}/webhooks/whatsapp",
            "WHATSUP_SANDBOX_RATE_PER_S": "500",
            # A minute of 5xx is waited out rather than dead-lettered: retries up to 10 s apart for 3 minutes.
            "WHATSUP_SENDER_MAX_ATTEMPTS": "30",
            "WHATSUP_SENDER_BACKOFF_MAX_S": "10",
            # A send a crash left unconfirmed waits for its callback past an outage of the webhook (Redis
            # down 30 s, the sandbox retrying a refused callback up to 10 s apart) before it is sent again.
            "WHATSUP_SENDER_CONFIRM_WAIT_S": "90",
        }

    def __init__(
        self,
        settings: Settings,
        pipeline: Any,
        plan: ChaosPlan,
        stack: dict[str, dict[str, str]],
        window_start: float,
        duration_s: float,
        messages_per_s: float,
        say: Callable[[str], None],
        driver_ids: list[str] | None = None,
        webhooks_per_s: float = 0.0,
    ) -> None:
        self.settings, self.pipeline, self.stack, self.say = settings, pipeline, stack, say
        self.meta_url = pipeline.env["WHATSUP_WHATSAPP_API_URL"]
        actions: dict[str, Callable[[Fault, random.Random], str]] = {
            "kill_worker": self._kill_worker,
            "broker_restart": self._restart_broker,
            "sink_down": self._sink_down,
            "redis_down": self._redis_down,
            "meta_errors": self._meta_errors,
        }
        self.chaos = Chaos(plan_faults(plan, duration_s), actions, window_start, plan.seed)
        self.messages_per_s = messages_per_s
        self.acked: set[str] = set()
        self.unconfirmed: set[str] = set()
        self.restarts: list[str] = []
        self._acting: set[str] = set()  # processes a fault is breaking or repairing: not the supervisor's
        self._lock = threading.Lock()
        self._halt = threading.Event()
        self._producer = threading.Thread(target=self._produce_messages, name="soak-messages", daemon=True)
        self._supervisor = threading.Thread(target=self._supervise, name="soak-supervisor", daemon=True)
        self.webhooks: WebhookLoad | None = None
        if webhooks_per_s > 0 and driver_ids:
            registry = replace(settings, phone_hash_key=PHONE_HASH_KEY)
            phones = register_drivers(registry, driver_ids, pipeline.data_dir / "soak-registry.csv")
            url = f"http://127.0.0.1:{pipeline.ingest_port}/webhooks/whatsapp"
            self.webhooks = WebhookLoad(url, SANDBOX_SECRET, phones, webhooks_per_s, uuid.uuid4().hex[:6])

    def start(self) -> None:
        self.chaos.start()
        self._producer.start()
        self._supervisor.start()
        if self.webhooks is not None:
            self.webhooks.start()

    def stop(self, timeout_s: float = 180.0) -> None:
        """Stop the faults and the messages; leave every process running, as the supervisor would."""
        self.chaos.stop()
        self._halt.set()
        self._producer.join(60)
        if self.webhooks is not None:
            self.webhooks.stop()
        self._supervisor.join(timeout_s)
        deadline = time.monotonic() + timeout_s
        while not self._restart_exited() and time.monotonic() < deadline:
            time.sleep(1.0)

    def _supervise(self) -> None:
        """Start again any process that exited on its own (``restart: unless-stopped`` in compose)."""
        while not self._halt.wait(1.0):
            self._restart_exited()

    def _restart_exited(self) -> bool:
        """Start every process that exited on its own; True when all are running again."""
        with self._lock:
            exited = [p for p in self.pipeline.processes if not p.alive() and p.name not in self._acting]
        for process in exited:
            code = process.popen.returncode if process.popen else None
            at = time.time() - self.chaos.start_at
            self.say(f"soak: {process.name} exited ({code}) on its own; starting it again")
            self.restarts.append(f"{process.name} exited with {code} at {at:.0f} s")
            process.start()
            try:
                process.wait_healthy(60, restarts=0)
            except RuntimeError as exc:  # what it needs is still down: the next round tries again
                self.say(f"soak: {process.name} not healthy yet: {str(exc).splitlines()[0]}")
        return not exited

    def _acting_on(self, process: Process) -> contextlib.AbstractContextManager[None]:
        @contextlib.contextmanager
        def acting() -> Iterator[None]:
            with self._lock:
                self._acting.add(process.name)
            try:
                yield
            finally:
                with self._lock:
                    self._acting.discard(process.name)

        return acting()

    def _processes(self, role: str) -> list[Process]:
        return [p for p in self.pipeline.processes if p.role == role]

    def _kill_worker(self, fault: Fault, rng: random.Random) -> str:
        worker = rng.choice(self._processes("worker"))
        pid, started = worker.pid, time.monotonic()
        with self._acting_on(worker):
            worker.kill()
            worker.start()
            worker.wait_healthy()
        self.say(f"soak: {worker.name} (pid {pid}) killed with SIGKILL, healthy again")
        return f"{worker.name} killed, healthy again after {time.monotonic() - started:.1f} s"

    def _script(self, which: str, action: str) -> None:
        stack_script(which, action, self.stack.get(which, {}))

    def _restart_broker(self, fault: Fault, rng: random.Random) -> str:
        started = time.monotonic()
        self._script("kafka", "stop")
        self._script("kafka", "start")
        self.say("soak: the broker was restarted")
        return f"broker stopped and started again in {time.monotonic() - started:.1f} s"

    def _sink_down(self, fault: Fault, rng: random.Random) -> str:
        sink = self._processes("sink")[0]
        with self._acting_on(sink):
            sink.kill()
            self.say(f"soak: the sink's engine is down for {fault.outage_s:.0f} s")
            self.chaos.halt.wait(fault.outage_s)
            sink.start()
            sink.wait_healthy()
        return f"sink killed, started again after {fault.outage_s:.0f} s"

    def _redis_down(self, fault: Fault, rng: random.Random) -> str:
        self._script("redis", "stop")
        self.say(f"soak: Redis is down for {fault.outage_s:.0f} s")
        self.chaos.halt.wait(fault.outage_s)
        self._script("redis", "start")
        return f"Redis stopped for {fault.outage_s:.0f} s"

    def _meta_errors(self, fault: Fault, rng: random.Random) -> str:
        fault_body = {"http_status": 500, "code": 131000, "times": 10**9}
        httpx.post(f"{self.meta_url}/_sandbox/faults", json=fault_body, timeout=10).raise_for_status()
        self.say(f"soak: the Meta sandbox answers 500 for {fault.outage_s:.0f} s")
        self.chaos.halt.wait(fault.outage_s)
        httpx.delete(f"{self.meta_url}/_sandbox/faults", timeout=10).raise_for_status()
        return f"Meta answered 500 for {fault.outage_s:.0f} s"

    def _produce_messages(self) -> None:
        """Produce WhatsApp messages with unique keys at a steady rate; keep which the broker acknowledged."""
        producer = make_producer(self.settings, **{"message.timeout.ms": 20_000})
        topic = topics.qualified(topics.WHATSAPP_OUTBOUND, self.settings.topic_prefix)
        encode, run = codec("OutboundMessage").encode, uuid.uuid4().hex[:6]

        def delivered(err: Any, message: Any) -> None:
            key = message.key().decode()
            (self.unconfirmed if err is not None else self.acked).add(key)

        sent = 0
        while not self._halt.wait(1 / self.messages_per_s):
            key, to = f"soak-{run}-{sent}", f"+55119{sent % 10_000_000:08d}"
            record = {
                "message_key": key,
                "to": to,
                "to_hash": f"h{sent % 997}",
                "text": f"Sua entrega {sent} chega em breve",
                "reason": "eta_update",
                "created_at": int(time.time() * 1000),
            }
            try:
                producer.produce(topic, encode(record), key.encode(), on_delivery=delivered)
            except BufferError:
                self.unconfirmed.add(key)
            producer.poll(0)
            sent += 1
        producer.flush(60)

    def findings(self, sink: Process, timeout_s: float = 300.0) -> SoakFindings:
        """Wait for the sender to deliver what was acknowledged, then check everything faults could break."""
        found = SoakFindings(faults=list(self.chaos.log), repair_errors=list(self.chaos.errors))
        found.restarts = list(self.restarts)
        found.messages_acked, found.messages_unconfirmed = len(self.acked), len(self.unconfirmed)
        deadline = time.monotonic() + timeout_s
        delivered = self._sandbox_keys()
        while not self.acked <= set(delivered) and time.monotonic() < deadline:
            time.sleep(2.0)
            delivered = self._sandbox_keys()
        found.messages_lost = len(self.acked - set(delivered))
        found.messages_twice = sum(1 for n in delivered.values() if n > 1)
        found.twice_keys = sorted(key for key, n in delivered.items() if n > 1)[:5]
        query = verify_settings(self.settings, sink)
        found.alerts_twice = int(run_query(query, ALERTS_TWICE)[0]["n"])
        if self.webhooks is not None:
            found.webhooks = self.webhooks.findings(self.settings)
        found.tracebacks = {p.name: _tracebacks(p) for p in self.pipeline.processes if _tracebacks(p)}
        found.control_lost = commit_first_control(self.settings)
        return found

    def _sandbox_keys(self) -> collections.Counter[str]:
        answer = httpx.get(f"{self.meta_url}/_sandbox/messages", timeout=30).json()
        return collections.Counter(str(m.get("biz_opaque_callback_data")) for m in answer["messages"])


def stack_script(which: str, action: str, env: dict[str, str]) -> None:
    """Run ``deploy/{which}/{which}.sh action`` (kafka or redis) with ``env`` over the environment."""
    script = PROJECT_ROOT / "deploy" / which / f"{which}.sh"
    environment = {**os.environ, **env}
    subprocess.run(
        ["bash", str(script), action], env=environment, check=True, capture_output=True, timeout=180
    )


@contextlib.contextmanager
def own_stack(base: Settings, data_dir: Path) -> Iterator[tuple[Settings, dict[str, dict[str, str]]]]:
    """A broker and a Redis for the soak alone, which restarts them: yield ``base`` pointed at them and
    their scripts' environments."""
    kafka = {"KAFKA_DATA_DIR": str(data_dir / "kafka"), "KAFKA_PORT": str(free_port())}
    kafka["KAFKA_CONTROLLER_PORT"] = str(free_port())
    redis = {"REDIS_DATA_DIR": str(data_dir / "redis"), "REDIS_PORT": str(free_port())}
    stack = {"kafka": kafka, "redis": redis}
    stack_script("kafka", "start", kafka)
    try:
        stack_script("redis", "start", redis)
        try:
            settings = replace(
                base,
                kafka_bootstrap=f"127.0.0.1:{kafka['KAFKA_PORT']}",
                redis_url=f"redis://127.0.0.1:{redis['REDIS_PORT']}/0",
            )
            yield settings, stack
        finally:
            stack_script("redis", "stop", redis)
    finally:
        stack_script("kafka", "stop", kafka)


def verify_settings(settings: Settings, sink: Process) -> Settings:
    """The settings that query this run's sink."""
    return replace(settings, sink_port=int(sink.env["WHATSUP_SINK_PORT"]))


def _tracebacks(process: Process) -> int:
    try:
        return process.log_path.read_text(errors="replace").count("Traceback (most recent call last)")
    except OSError:
        return 0


def commit_first_control(settings: Settings, crash_at_batch: int = 3) -> int:
    """The negative control: copy the clean verdicts with a consumer that commits each batch before it
    writes it, crashing once between the two; return what the fleet's accounting finds lost."""
    topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    decode = codec("CleanPing").decode
    expected = collections.Counter(
        decode(value)["ping_id"] for _, _, value in verify.read_topic(settings, topic)
    )
    written: collections.Counter[str] = collections.Counter()
    group = f"{settings.app_id}-commit-first-{uuid.uuid4().hex[:6]}"
    for life in range(2):  # the crash ends the first life; the second resumes from the committed offsets
        config = {"group.id": group, "enable.auto.commit": False, "auto.offset.reset": "earliest"}
        consumer = Consumer(client_config(settings, **config))
        consumer.subscribe([topic])
        try:
            batch_number, idle = 0, 0
            while idle < 10:
                batch = [m for m in consumer.consume(500, timeout=1.0) if m.error() is None]
                idle = 0 if batch else idle + 1
                if not batch:
                    continue
                consumer.commit(asynchronous=False)  # the bug: committed before the outputs exist
                batch_number += 1
                if life == 0 and batch_number == crash_at_batch:
                    break  # the crash: this batch was committed and never written
                written.update(decode(m.value() or b"")["ping_id"] for m in batch)
        finally:
            consumer.close()
    accounting = verify.account(list(expected.elements()), written, collections.Counter(), set())
    return accounting.lost
