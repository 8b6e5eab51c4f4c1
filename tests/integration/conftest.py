"""The integration tier runs against the real stack: a Kafka broker and Redis, started once per session.

Resolution order for each service: the ``WHATSUP_KAFKA_BOOTSTRAP`` / ``WHATSUP_REDIS_URL`` already running;
else, where a Docker engine answers, testcontainers; else the local processes of ``deploy/`` on free
loopback ports, in a scratch directory. Whatever a fixture started, it stops.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from base.kafka import create_topics
from base.settings import Settings
from tests.integration.stack import (
    ROOT,
    WorkerProcess,
    docker_available,
    free_port,
    run_script,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Bootstrap address of a real Kafka broker for the whole test session."""
    if os.environ.get("WHATSUP_KAFKA_BOOTSTRAP"):
        yield os.environ["WHATSUP_KAFKA_BOOTSTRAP"]
        return
    if docker_available():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.1").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    env = {
        "KAFKA_DATA_DIR": str(tmp_path_factory.mktemp("kafka")),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    run_script(ROOT / "deploy/kafka/kafka.sh", "start", env)
    try:
        yield f"127.0.0.1:{env['KAFKA_PORT']}"
    finally:
        run_script(ROOT / "deploy/kafka/kafka.sh", "stop", env)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """URL of a real Redis server for the whole test session."""
    if os.environ.get("WHATSUP_REDIS_URL"):
        yield os.environ["WHATSUP_REDIS_URL"]
        return
    if docker_available():
        from testcontainers.redis import RedisContainer

        with RedisContainer("redis:7-alpine") as container:
            yield f"redis://{container.get_container_host_ip()}:{container.get_exposed_port(6379)}/0"
        return
    env = {"REDIS_DATA_DIR": str(tmp_path_factory.mktemp("redis")), "REDIS_PORT": str(free_port())}
    run_script(ROOT / "deploy/redis/redis.sh", "start", env)
    try:
        yield f"redis://127.0.0.1:{env['REDIS_PORT']}/0"
    finally:
        run_script(ROOT / "deploy/redis/redis.sh", "stop", env)


@pytest.fixture()
def stack_env(kafka_bootstrap: str, redis_url: str, tmp_path: Path) -> dict[str, str]:
    """WHATSUP_* variables giving this test its own topics, consumer group and data directory."""
    run = uuid.uuid4().hex[:8]
    return {
        "WHATSUP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WHATSUP_REDIS_URL": redis_url,
        "WHATSUP_TOPIC_PREFIX": f"t{run}.",
        "WHATSUP_APP_ID": f"whatsup-t{run}",
        "WHATSUP_DATA_DIR": str(tmp_path / "var"),
        "WHATSUP_WEB_PORT": str(free_port()),
        "WHATSUP_PARTITIONS": "4",
        "WHATSUP_TOKEN_SECRET": secrets.token_hex(16),
        "WHATSUP_INGEST_RATE_PER_S": "200",
        "WHATSUP_INGEST_BURST": "400",
    }


@pytest.fixture()
def stack_settings(stack_env: dict[str, str]) -> Settings:
    """The settings a worker of this test reads, with the test's topics already created."""
    settings = Settings.from_env(stack_env)
    create_topics(settings)
    return settings


@pytest.fixture()
def worker(stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path) -> Iterator[WorkerProcess]:
    """A real ``whatsup worker`` process on this test's topics, stopped after the test."""
    process = WorkerProcess(stack_env, tmp_path / "worker.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()
