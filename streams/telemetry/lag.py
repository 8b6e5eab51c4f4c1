"""Consumer lag from offsets, a pure function: what the sampling timer publishes per topic partition."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple


class Partition(NamedTuple):
    """A topic partition as labelled in metrics: the topic without the deployment's prefix."""

    topic: str
    partition: int


def consumer_lag(
    assigned: Iterable[tuple[str, int]],
    highwaters: Mapping[tuple[str, int], int | None],
    committed: Mapping[tuple[str, int], int | None],
    known: Collection[str],
    prefix: str = "",
) -> dict[Partition, int]:
    """Return records not yet committed per assigned source partition: highwater minus committed offset.

    Both offsets are "next offset" positions (Kafka's and Faust's convention), so a caught-up partition has
    lag 0. A partition whose highwater is not known yet (nothing fetched) is left out rather than guessed;
    one with nothing committed yet counts from offset 0 (the group reads from the earliest record).
    Only the pipeline's ``known`` topics count: Faust's own (table changelogs, the leader topic) are not
    consumed by agents.
    """
    lags: dict[Partition, int] = {}
    for topic, partition in assigned:
        name = topic.removeprefix(prefix)
        if (name == topic and prefix) or name not in known:
            continue
        highwater = highwaters.get((topic, partition))
        if highwater is None:
            continue
        done = committed.get((topic, partition)) or 0
        lags[Partition(name, partition)] = max(0, highwater - done)
    return lags
