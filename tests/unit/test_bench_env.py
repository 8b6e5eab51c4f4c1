"""The environment a benchmark gives the workers it starts."""

from __future__ import annotations

import socket

from streams.bench import _env
from streams.settings import Settings


def test_each_benchmark_worker_gets_a_web_port_nobody_listens_on() -> None:
    """A worker left over from a killed run must not answer the next run's health check."""
    settings = Settings.from_env({})
    ports = [int(_env(settings)["WHATSUP_WEB_PORT"]) for _ in range(3)]
    assert len(set(ports)) == 3, "each worker its own port"
    for port in ports:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))  # nobody listens there: binding succeeds
