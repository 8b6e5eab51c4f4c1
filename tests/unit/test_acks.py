"""Acks of messages no agent took (skipped by a stream at a rebalance) never make an offset committable."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from faust.types import TP, ConsumerMessage

from streams import acks
from streams.app import app, gps_pings_raw_topic

TOPIC = gps_pings_raw_topic.get_topic_name()


def _message(offset: int, *, tracked: bool) -> ConsumerMessage:
    tp = TP(TOPIC, 0)
    message = ConsumerMessage(TOPIC, 0, offset, 0.0, 0, None, b"d-1", b"ping", None, 3, 4, tp)
    message.tracked = tracked
    return message


@pytest.fixture(autouse=True)
def subscribed() -> Iterator[None]:
    """Mark the topic as acked by an agent, as the conductor does when the worker subscribes."""
    acking = app.topics._acking_topics  # type: ignore[attr-defined]
    acking.add(TOPIC)
    yield
    acking.discard(TOPIC)


def test_an_untracked_message_is_not_acked_and_its_offset_stays_uncommitted() -> None:
    consumer = app.consumer
    skipped = _message(10, tracked=False)
    assert consumer.ack(skipped) is False
    assert skipped.acked is False
    assert 10 not in consumer._acked_index[TP(TOPIC, 0)]


def test_a_message_an_agent_took_is_acked() -> None:
    consumer = app.consumer
    taken = _message(11, tracked=True)
    assert consumer.ack(taken) is True
    assert 11 in consumer._acked_index[TP(TOPIC, 0)]


def test_negative_control_faust_alone_acks_the_skipped_message() -> None:
    consumer = app.consumer
    skipped = _message(12, tracked=False)
    assert acks._faust_ack(consumer, skipped) is True  # what made a skipped batch committable
    assert 12 in consumer._acked_index[TP(TOPIC, 0)]
