"""Agents under ``test_context()``: no broker; what an agent delivers is captured and decoded for real."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from base import topics
from schemas.codecs import codec
from streams.app import app, settings
from streams.deliveries import agents as delivery_agents
from streams.deliveries import speeds
from streams.pings import agents


class SentRecords:
    """What agents delivered, per topic, as the decoded values a consumer would read."""

    def __init__(self) -> None:
        self.by_topic: dict[str, list[tuple[bytes, Any]]] = {}

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        name = topic.removeprefix(settings.topic_prefix)
        spec = topics.TOPICS_BY_NAME.get(name)
        decoded = codec(spec.schema).decode(value) if spec else value  # changelogs stay raw
        self.by_topic.setdefault(topic, []).append((key, decoded))

    def values(self, topic: Any) -> list[Any]:
        return [value for _, value in self.by_topic.get(topic.get_topic_name(), [])]

    def keys(self, topic: Any) -> list[bytes]:
        return [key for key, _ in self.by_topic.get(topic.get_topic_name(), [])]

    def outputs(self) -> int:
        """Records delivered to pipeline topics (changelogs excluded)."""
        return sum(len(v) for t, v in self.by_topic.items() if not t.endswith("-changelog"))

    def changelog(self) -> list[tuple[bytes, Any]]:
        return [kv for t, v in self.by_topic.items() if t.endswith("-changelog") for kv in v]


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentRecords]:
    """Capture every record an agent delivers, decoding each value with its topic's real codec."""
    records = SentRecords()
    app.finalize()
    app.flow_control.resume()
    for table in app.tables.values():
        table.data.clear()  # tables are module-level: each test starts with empty state

    async def deliver(batch: list[tuple[str, bytes, bytes]]) -> None:
        for topic, key, value in batch:
            records.add(topic, key, value)

    monkeypatch.setattr(agents, "deliver_records", deliver)
    monkeypatch.setattr(speeds, "deliver_records", deliver)
    yield records


@pytest.fixture()
def captured(sent: SentRecords, monkeypatch: pytest.MonkeyPatch) -> Iterator[SentRecords]:
    """Capture what the delivery agent delivers too; start from an empty delivery index, nothing processed."""

    async def deliver(batch: list[tuple[str, bytes, bytes]]) -> None:
        for topic, key, value in batch:
            sent.add(topic, key, value)

    monkeypatch.setattr(delivery_agents, "deliver_records", deliver)
    delivery_agents.delivery_index.clear()
    delivery_agents._indexed.clear()
    delivery_agents.processed.clear()
    yield sent
