"""Helpers for the sink's tests on the real broker: a ``whatsup sink`` process, producing, offsets."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from base.kafka import make_producer
from base.settings import Settings
from sinks.query import run_query
from tests.integration.stack import WorkerProcess


class SinkProcess(WorkerProcess):
    """A ``whatsup sink`` in its own process; healthy once it owns its partitions."""

    def __init__(self, env: dict[str, str], log_path: Any) -> None:
        super().__init__(env, log_path, command=("sink",))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.env['WHATSUP_SINK_PORT']}"

    def start_supervised(self, timeout_s: float = 90.0) -> None:
        """Start the sink; if a signal kills it before it is healthy, start it once more, as the deployment's
        supervisor would. The embedded engine has been seen dying of SIGSEGV right after its migrations,
        rarely and not reproducibly; tests whose subject is not the sink's start-up use this."""
        try:
            self.start(timeout_s)
        except AssertionError:
            if self.process is None or self.process.returncode is None or self.process.returncode >= 0:
                raise
            print(f"the sink died of signal {-self.process.returncode} at start-up; starting it again")
            self.start(timeout_s)

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text


def produce(settings: Settings, topic: str, records: list[tuple[bytes, bytes]]) -> None:
    """Produce (key, value) records to ``topic`` and wait for the broker's acknowledgements."""
    producer = make_producer(settings, **{"linger.ms": 20})
    for key, value in records:
        while True:
            try:
                producer.produce(topic, value, key)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(60) == 0


def offsets(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """Return each partition's [low, high) offsets of ``topic``."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "offsets-reader"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in partitions}
    finally:
        consumer.close()


def wait_for(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    """Poll ``check`` until it holds, or fail naming ``what``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def count(settings: Settings, sql: str) -> int:
    """Return the single number ``sql`` answers, through the sink's query endpoint."""
    (row,) = run_query(settings, sql)
    return int(next(iter(row.values())))
