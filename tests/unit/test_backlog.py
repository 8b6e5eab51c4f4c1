"""Consumer group backlog: group ids by role, the arithmetic over committed offsets, the sampler's gauge."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from concurrent.futures import Future
from types import SimpleNamespace
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition
from prometheus_client import REGISTRY

from base import metrics, topics
from base.backlog import STALE_AFTER_S, GroupBacklog
from base.kafka import consumer_group_backlog
from base.settings import Settings
from sinks.runner import consumer_config

GAUGE = "whatsup_consumer_group_backlog_messages"


class FakeAdmin:
    """Answers list_consumer_group_offsets with fixed committed offsets, or raises ``fail`` while set."""

    def __init__(self, committed: list[TopicPartition]) -> None:
        self.committed = committed
        self.fail: Exception | None = None

    def list_consumer_group_offsets(
        self, requests: list[Any], request_timeout: float
    ) -> dict[str, Future[Any]]:
        if self.fail is not None:
            raise self.fail
        future: Future[Any] = Future()
        future.set_result(SimpleNamespace(topic_partitions=self.committed))
        return {requests[0].group_id: future}


class FakeConsumer:
    """High watermarks from a dict; remembers being closed."""

    def __init__(self, highs: dict[tuple[str, int], int]) -> None:
        self.highs = highs
        self.closed = 0

    def get_watermark_offsets(self, tp: TopicPartition, timeout: float) -> tuple[int, int]:
        return 0, self.highs[(tp.topic, tp.partition)]

    def close(self) -> None:
        self.closed += 1


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def committed(topic: str, partition: int, offset: int, error: KafkaError | None = None) -> Any:
    """A committed offset as the admin client answers it."""
    return SimpleNamespace(topic=topic, partition=partition, offset=offset, error=error)


@pytest.fixture()
def gauge_value() -> Iterator[Any]:
    """Read the sender's series of the gauge; remove it afterwards (the registry is process-wide)."""
    yield lambda: REGISTRY.get_sample_value(GAUGE, {"group": "sender"})
    with contextlib.suppress(KeyError):
        metrics.GROUP_BACKLOG.remove("sender")


def test_each_role_has_its_consumer_group_and_metrics_never_carry_the_app_id() -> None:
    assert topics.consumer_group("worker", "whatsup-prod") == "whatsup-prod"  # Faust's group is the app id
    assert topics.consumer_group("sink", "whatsup-prod") == "whatsup-prod-clickhouse-sink"
    assert topics.consumer_group("sender", "whatsup-prod") == "whatsup-prod-sender"
    settings = Settings.from_env({"WHATSUP_APP_ID": "whatsup-prod"})
    assert consumer_config(settings)["group.id"] == topics.consumer_group("sink", settings.app_id)
    with pytest.raises(KeyError):
        topics.consumer_group("whatsup-prod-sender", "whatsup-prod")


def test_backlog_is_end_minus_committed_over_every_committed_partition() -> None:
    admin = FakeAdmin(
        [
            committed("raw", 0, 100),
            committed("raw", 1, 7),
            committed("clean", 0, 50),
            committed("raw", 2, -1001),  # never committed: no position, not counted
            committed("clean", 1, 3, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART)),
            committed("clean", 2, 90),  # a commit seen before the highwater moved: never negative
        ]
    )
    highs = {
        ("raw", 0): 120,
        ("raw", 1): 7,
        ("clean", 0): 80,
        ("raw", 2): 500,
        ("clean", 1): 9,
        ("clean", 2): 85,
    }
    assert consumer_group_backlog(admin, FakeConsumer(highs), "g") == 20 + 0 + 30


def test_a_group_that_never_committed_has_no_backlog() -> None:
    assert consumer_group_backlog(FakeAdmin([]), FakeConsumer({}), "g") == 0


def test_the_sampler_sets_the_role_series_keeps_it_through_a_failure_and_drops_it_when_stale(
    gauge_value: Any, caplog: pytest.LogCaptureFixture
) -> None:
    admin, clock = FakeAdmin([committed("outbound", 0, 10)]), Clock()
    consumer = FakeConsumer({("outbound", 0): 250})
    backlog = GroupBacklog("sender", "whatsup-prod-sender", admin, consumer, clock=clock)

    backlog.publish()
    assert gauge_value() == 240

    admin.fail = KafkaException(KafkaError(KafkaError._TIMED_OUT))
    with caplog.at_level(logging.DEBUG, logger="base.backlog"):
        clock.now += STALE_AFTER_S / 2
        backlog.publish()
        assert gauge_value() == 240  # one missed read: the last value stands
        clock.now += STALE_AFTER_S
        backlog.publish()
        assert gauge_value() is None  # too old to say anything about now
    levels = [r.levelno for r in caplog.records]
    assert levels == [logging.WARNING, logging.DEBUG]  # one warning per outage, not one per tick

    admin.fail = None
    consumer.highs[("outbound", 0)] = 10
    backlog.publish()
    assert gauge_value() == 0


def test_a_closed_sampler_publishes_nothing_and_closes_its_reader_once(gauge_value: Any) -> None:
    consumer = FakeConsumer({("outbound", 0): 5})
    backlog = GroupBacklog("sender", "g", FakeAdmin([committed("outbound", 0, 0)]), consumer)
    backlog.close()
    backlog.close()
    backlog.publish()
    assert consumer.closed == 1 and gauge_value() is None
