"""A Kafka broker and a Redis server speaking TLS with a throw-away CA (``loadtest.certs``).

The broker is the project's own (``deploy/kafka/kafka.sh``) with an SSL and a SASL_SSL listener besides the
plaintext one it always has; Redis is Debian's ``redis-server`` with only a TLS port.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import redis

from loadtest.certs import Authority
from tests.integration.stack import ROOT, free_port, run_script

SASL_USER = "whatsup"


@dataclass(frozen=True)
class TlsBroker:
    """The broker's listeners and the SASL user's password."""

    plaintext: str
    ssl: str
    sasl_ssl: str
    password: str


@contextlib.contextmanager
def tls_broker(directory: Path, authority: Authority, password: str) -> Iterator[TlsBroker]:
    """Run a broker with plaintext, SSL and SASL_SSL listeners for the duration of the block."""
    ports = {name: free_port() for name in ("port", "controller", "ssl", "sasl_ssl")}
    env = {
        "KAFKA_DATA_DIR": str(directory),
        "KAFKA_PORT": str(ports["port"]),
        "KAFKA_CONTROLLER_PORT": str(ports["controller"]),
        "KAFKA_SSL_PORT": str(ports["ssl"]),
        "KAFKA_SASL_SSL_PORT": str(ports["sasl_ssl"]),
        "KAFKA_TLS_DIR": str(authority.ca.parent),
        "KAFKA_SASL_USERS": f"{SASL_USER}:{password}",
    }
    run_script(ROOT / "deploy/kafka/kafka.sh", "start", env)
    try:
        yield TlsBroker(
            *(f"127.0.0.1:{ports[name]}" for name in ("port", "ssl", "sasl_ssl")), password=password
        )
    finally:
        run_script(ROOT / "deploy/kafka/kafka.sh", "stop", env)


@contextlib.contextmanager
def tls_redis(directory: Path, authority: Authority) -> Iterator[str]:
    """Run Redis with only a TLS port; yield its ``rediss://`` URL, trusting the test CA."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = (directory / "redis.log").open("ab")
    process = subprocess.Popen(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(authority.cert),
            "--tls-key-file",
            str(authority.key),
            "--tls-ca-cert-file",
            str(authority.ca),
            "--tls-auth-clients",
            "no",
            "--dir",
            str(directory),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={authority.ca}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with redis.Redis.from_url(url, socket_timeout=1) as client:
                    client.ping()
                break
            except redis.RedisError:
                assert process.poll() is None and time.monotonic() < deadline, (
                    directory / "redis.log"
                ).read_text()
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait(20)
        log.close()
