"""The environment a benchmark gives the workers it starts."""

from __future__ import annotations

import socket
import time

from base.settings import Settings
from benches.harness import worker_env as _env
from benches.pings import bench_pure_stage
from simulator.model import SimConfig, simulate


def test_each_benchmark_worker_gets_a_web_port_nobody_listens_on() -> None:
    """A worker left over from a killed run must not answer the next run's health check."""
    settings = Settings.from_env({})
    ports = [int(_env(settings)["WHATSUP_WEB_PORT"]) for _ in range(3)]
    assert len(set(ports)) == 3, "each worker its own port"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nobody listens there: binding succeeds


def test_the_stage_work_alone_judges_a_small_fleet_as_the_agent_would() -> None:
    """The in-process measure of the clean stage runs the agent's own batch code on simulated phones."""
    end_ms = int(time.time() * 1000)
    runs = simulate(SimConfig(drivers=5, minutes=2, end_ms=end_ms, seed=3, driver_prefix="b"))
    stage, avro = bench_pure_stage(runs, received_ms=end_ms + 5_000)
    assert stage > 0 and avro > stage  # pings per CPU second; the Avro work is a part of the stage's
