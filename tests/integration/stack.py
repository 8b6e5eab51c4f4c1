"""Helpers for tests on the real stack: scripts, worker processes, topic readers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO, Any, NamedTuple, Self

import httpx
from confluent_kafka import Consumer, TopicPartition

from base.exceptions import SchemaError
from base.kafka import client_config
from base.settings import Settings
from loadtest.processes import free_port as free_port  # re-exported: the tests pick ports the same way
from schemas.codecs import codec

ROOT = Path(__file__).resolve().parents[2]


def docker_available() -> bool:
    """Tell whether a Docker engine answers, so testcontainers can be used instead of local processes."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
    except Exception:
        return False
    return True


def run_script(script: Path, action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a deploy/ script and fail with its output if it fails."""
    result = subprocess.run(
        ["bash", str(script), action],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode != 0:
        raise AssertionError(f"{script.name} {action} failed ({result.returncode}):\n{result.stderr}")
    return result


def _child_env(env: dict[str, str]) -> dict[str, str]:
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    return {**inherited, **env}


class WorkerProcess:
    """A ``whatsup worker`` in its own process, as production runs it."""

    def __init__(self, env: dict[str, str], log_path: Path, command: Iterable[str] = ("worker",)) -> None:
        self.env = env
        self.log_path = log_path
        self.command = list(command)
        self.process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WHATSUP_WEB_PORT']}"

    def start(self, timeout_s: float = 90.0) -> None:
        """Start the worker and wait until its web server says it is healthy."""
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "streams", *self.command],
            env=_child_env(self.env),
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._close_log()
                raise AssertionError(f"worker exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        self.kill()
        raise AssertionError(f"worker not healthy within {timeout_s}s:\n{self.log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Stop the worker gracefully (SIGTERM), killing it if it hangs; return its exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_log()
        return self.process.returncode

    def kill(self) -> None:
        """Kill the worker with SIGKILL, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close_log()

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


class Record(NamedTuple):
    """One decoded Kafka record."""

    key: bytes | None
    value: dict[str, Any]
    partition: int


def read_topic(
    settings: Settings,
    topic: str,
    schema: str,
    *,
    until: Callable[[list[Record]], bool],
    timeout_s: float = 60.0,
) -> list[Record]:
    """Read a topic from the beginning, decoding Avro values, until ``until(records)`` or the timeout."""
    consumer = Consumer(
        client_config(
            settings,
            **{
                "group.id": f"reader-{topic}-{time.monotonic_ns()}",
                "enable.auto.commit": False,
                "auto.offset.reset": "earliest",
            },
        )
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    decode = codec(schema).decode
    records: list[Record] = []
    deadline = time.monotonic() + timeout_s
    try:
        while not until(records) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.2):
                if message.error() is not None:
                    continue
                try:
                    value = decode(message.value())
                except SchemaError:
                    value = {"undecodable": message.value()}
                records.append(Record(message.key(), value, message.partition()))
    finally:
        consumer.close()
    return records


class Background:
    """A loop in a daemon thread for the length of a ``with`` block; subclasses write ``_run``, which
    returns once ``self._stop`` is set."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        raise NotImplementedError


def wait_until(check: Callable[[], Any], what: str, timeout_s: float = 90.0) -> Any:
    """Poll ``check`` every half second until it returns something true; return that, or fail naming
    ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"{what} not seen within {timeout_s}s")
