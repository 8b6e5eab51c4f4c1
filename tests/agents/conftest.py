"""Agents under ``test_context()``: no broker; what an agent sends is captured and Avro-encoded for real."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from faust.serializers import codecs
from faust.tables.table import Table
from faust.topics import Topic

from streams.app import app


class SentRecords:
    """What agents sent, per topic, as the decoded values a consumer would read."""

    def __init__(self) -> None:
        self.by_topic: dict[str, list[tuple[Any, dict[str, Any]]]] = {}
        self.changelog: dict[str, dict[Any, Any]] = {}

    def values(self, topic: Any) -> list[dict[str, Any]]:
        return [value for _, value in self.by_topic.get(topic.get_topic_name(), [])]

    def keys(self, topic: Any) -> list[Any]:
        return [key for key, _ in self.by_topic.get(topic.get_topic_name(), [])]


@pytest.fixture()
def sent(monkeypatch: pytest.MonkeyPatch) -> Iterator[SentRecords]:
    """Capture every topic send; each value goes through its topic's real codec both ways."""
    records = SentRecords()
    app.finalize()
    app.flow_control.resume()
    for table in app.tables.values():
        table.data.clear()  # tables are module-level: each test starts with empty state

    async def capture(self: Topic, key: Any = None, value: Any = None, **kwargs: Any) -> asyncio.Future[None]:
        encoded = codecs.dumps(self.value_serializer, value)
        decoded = codecs.loads(self.value_serializer, encoded)
        records.by_topic.setdefault(self.get_topic_name(), []).append((key, decoded))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    def capture_changelog(self: Table, partition: Any, key: Any, value: Any, *args: Any, **kw: Any) -> Any:
        records.changelog.setdefault(self.name, {})[key] = value
        return SimpleNamespace(message=SimpleNamespace(partition=partition or 0))

    monkeypatch.setattr(Topic, "send", capture)
    monkeypatch.setattr(Table, "send_changelog", capture_changelog)
    yield records
