"""The driver-state table's store: a changelog record never replaces a newer state than its own.

On every rebalance Faust rebuilds an in-memory table from its changelog, reading up to the high watermark it
saw when recovery began, and writes those records over the store. The agent persists a batch's states (to
the changelog, then to the store) while recovery may be running, so without this rule recovery could put a
state back that the agent had already moved past, while the batch's offsets still get committed: the next
pings would be judged from the older state and come out different. Every packed state carries the source
offset it has applied, and offsets only grow within a partition, so the newer of two states is the one with
the higher offset, whichever worker wrote it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from faust.stores.memory import Store as MemoryStore
from faust.types import EventT, StoreT
from yarl import URL

from streams.app import Table
from streams.pings.state import applied_offset


class NewestStateStore(MemoryStore):
    """In-memory store that keeps, per driver, the state with the highest applied source offset."""

    def _create_batch_iterator(
        self,
        mark_as_delete: Callable[[Any], None],
        to_key: Callable[[Any], Any],
        to_value: Callable[[Any], Any],
        batch: Iterable[EventT],
    ) -> Iterator[tuple[Any, Any]]:
        data = self.data
        for key, value in super()._create_batch_iterator(mark_as_delete, to_key, to_value, batch):
            current = data.get(key)
            if current and value and applied_offset(value) < applied_offset(current):
                continue  # the agent has already stored a newer state than this record
            yield key, value


class DriverStateTable(Table):
    """A table whose store is ``NewestStateStore``."""

    def _new_store_by_url(self, url: str | URL) -> StoreT:
        return NewestStateStore(
            url,
            self.app,
            self,
            table_name=self.name,
            key_type=self.key_type,
            key_serializer=self.key_serializer,
            value_serializer=self.value_serializer,
            value_type=self.value_type,
            loop=self.loop,
            options=self.options,
        )
