"""What every suite shares: results, the suite record, a run's settings and topics, and starting a worker.

A suite module builds on these names and on nothing private of another suite.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import httpx

from base.kafka import create_topics
from base.settings import PROJECT_ROOT, Settings
from loadtest.processes import cpu_seconds as cpu_seconds  # re-exported: the suites read CPU the same way
from loadtest.processes import free_port as free_port  # re-exported: a worker's port, a sandbox's port


@dataclass
class Result:
    name: str
    value: float
    unit: str
    note: str = ""


@dataclass(frozen=True)
class Suite:
    """One area's benchmarks: its section title, how to run them, and how to read the numbers."""

    name: str
    title: str
    run: Callable[[Settings, bool], list[Result]]
    notes: tuple[str, ...] = ()


def bench_settings(base: Settings, label: str) -> Settings:
    """Return ``base`` with a prefix and app id of this run's own, its topics created."""
    run = uuid.uuid4().hex[:6]
    settings = replace(base, topic_prefix=f"bench-{label}-{run}.", app_id=f"bench-{label}-{run}")
    create_topics(settings)
    return settings


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Return the environment of a worker on ``settings``, on a free web port, quiet, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WHATSUP_")}
    env.update(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
            "WHATSUP_TOPIC_PREFIX": settings.topic_prefix,
            "WHATSUP_APP_ID": settings.app_id,
            "WHATSUP_PARTITIONS": str(settings.partitions),
            "WHATSUP_DATA_DIR": str(settings.data_dir / "bench" / settings.app_id),
            # A port of its own: a worker left over from a killed run must not answer this one's health check.
            "WHATSUP_WEB_PORT": str(free_port()),
            "WHATSUP_LOG_LEVEL": "WARNING",
            **extra,
        }
    )
    return env


def start_worker(env: dict[str, str]) -> subprocess.Popen[bytes]:
    """Start ``whatsup worker`` with ``env``, its output in the run's data dir."""
    log = Path(env["WHATSUP_DATA_DIR"]) / "worker.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "streams", "worker"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def load_average(when: str) -> Result:
    """Return the machine's 1-minute load average as a result row."""
    return Result(f"load average (1 min), {when}", os.getloadavg()[0], "ratio", "2 cores, shared machine")


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout_s: float = 120.0) -> None:
    """Wait until a worker answers /health, failing if it exits first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"worker exited with {process.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"worker not healthy within {timeout_s} s")
