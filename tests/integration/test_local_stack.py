"""The local stack scripts: a real broker and Redis start, stop, restart, and survive a crash."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest
import redis
from confluent_kafka.admin import AdminClient, NewTopic

from base import topics
from base.exceptions import StackError
from base.kafka import create_topics
from base.settings import Settings
from tests.integration.stack import ROOT, free_port, run_script

KAFKA = ROOT / "deploy/kafka/kafka.sh"
REDIS = ROOT / "deploy/redis/redis.sh"


def _broker_answers(bootstrap: str) -> bool:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    return admin.list_topics(timeout=10).brokers != {}


def _alive_threads(pid: int) -> int:
    alive = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(OSError):
            alive += "State:\tZ" not in status.read_text()
    return alive


def _wait_until_dead(pid: int) -> None:
    # The main thread of a killed JVM turns zombie before the others have exited and closed its sockets.
    deadline = time.monotonic() + 30
    while _alive_threads(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive_threads(pid), f"broker {pid} still running 30 s after SIGKILL"


def test_broker_starts_and_stops_twice_and_comes_back_after_kill_9(tmp_path: Path) -> None:
    env = {
        "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    bootstrap = f"127.0.0.1:{env['KAFKA_PORT']}"
    try:
        for _ in range(2):
            run_script(KAFKA, "start", env)
            assert _broker_answers(bootstrap)
            assert "already running" in run_script(KAFKA, "start", env).stderr
            run_script(KAFKA, "stop", env)
            assert "not running" in run_script(KAFKA, "stop", env).stderr

        run_script(KAFKA, "start", env)
        settings = Settings.from_env(
            {"WHATSUP_KAFKA_BOOTSTRAP": bootstrap, "WHATSUP_DATA_DIR": str(tmp_path)}
        )
        assert len(create_topics(settings)) == len(topics.TOPICS)
        pid = int((tmp_path / "kafka/kafka.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        _wait_until_dead(pid)
        # A crashed broker leaves its pid file and lock files behind: the next start must cope.
        run_script(KAFKA, "start", env)
        assert _broker_answers(bootstrap)
        assert create_topics(settings) == []  # the topics survived the crash
    finally:
        run_script(KAFKA, "stop", env)
    pid_file = tmp_path / "kafka/kafka.pid"
    assert not pid_file.exists()
    assert subprocess.run(["pgrep", "-f", str(tmp_path / "kafka/server.properties")]).returncode == 1


def test_broker_refuses_a_port_that_another_process_holds(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        env = {
            "KAFKA_DATA_DIR": str(tmp_path / "kafka"),
            "KAFKA_PORT": str(squatter.getsockname()[1]),
            "KAFKA_CONTROLLER_PORT": str(free_port()),
        }
        with pytest.raises(AssertionError, match="is taken by another process"):
            run_script(KAFKA, "start", env)


def test_redis_starts_twice_and_answers(tmp_path: Path) -> None:
    env = {"REDIS_DATA_DIR": str(tmp_path / "redis"), "REDIS_PORT": str(free_port())}
    try:
        for _ in range(2):
            run_script(REDIS, "start", env)
            client = redis.Redis.from_url(f"redis://127.0.0.1:{env['REDIS_PORT']}/0")
            assert client.set("claim:m1", "sender-a", nx=True, ex=60) in (True, None)
            assert client.set("claim:m1", "sender-b", nx=True, ex=60) is None
            client.close()
            run_script(REDIS, "stop", env)
    finally:
        run_script(REDIS, "stop", env)


def test_create_topics_is_idempotent_and_guards_co_partitioning(stack_env: dict[str, str]) -> None:
    settings = Settings.from_env(stack_env)
    created = create_topics(settings)
    assert sorted(created) == sorted(topics.qualified(t.name, settings.topic_prefix) for t in topics.TOPICS)
    assert create_topics(settings) == []

    skewed = Settings.from_env({**stack_env, "WHATSUP_TOPIC_PREFIX": settings.topic_prefix + "skew."})
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    wrong = topics.qualified(topics.ALERTS, skewed.topic_prefix)
    admin.create_topics([NewTopic(wrong, num_partitions=1, replication_factor=1)])[wrong].result()
    with pytest.raises(StackError, match=f"{wrong} has 1 partitions, expected 4"):
        create_topics(skewed)


def test_the_session_redis_is_real(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    assert client.ping() is True
    assert client.info("server")["redis_version"]
    client.close()
