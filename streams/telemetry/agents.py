"""The worker's sampled gauges (partition lag, its group's backlog, table sizes, rebalancing), up and build.

A timer samples them rather than a scrape-time collector, so a scrape never waits on the consumer and
every worker publishes at the same pace whether or not anyone scrapes it.
"""

from __future__ import annotations

import asyncio
import functools
import logging

from mode import Service

from base import metrics, topics
from base.backlog import GroupBacklog
from streams.app import app, settings
from streams.telemetry.lag import Partition, consumer_lag

logger = logging.getLogger(__name__)
ROLE = "worker"
_published: set[Partition] = set()


def sample_consumer_lag() -> dict[Partition, int]:
    """Read the consumer's highwater and committed offsets for its assigned partitions."""
    consumer = app.consumer
    assigned = consumer.assignment()
    highwaters: dict[tuple[str, int], int | None] = {}
    for tp in assigned:
        try:
            highwaters[(tp.topic, tp.partition)] = consumer.highwater(tp)
        except Exception:  # not fetched yet, or the consumer is between generations
            highwaters[(tp.topic, tp.partition)] = None
    # Faust keeps the offsets it committed (and those it resumed from) only in this attribute.
    offsets = consumer._committed_offset  # type: ignore[attr-defined]
    committed = {(tp.topic, tp.partition): offset for tp, offset in offsets.items()}
    return consumer_lag(
        ((tp.topic, tp.partition) for tp in assigned),
        highwaters,
        committed,
        topics.TOPICS_BY_NAME,
        settings.topic_prefix,
    )


def publish_consumer_lag(lags: dict[Partition, int]) -> None:
    """Set the lag gauges, and drop those of partitions this worker no longer owns."""
    for gone in _published - lags.keys():
        metrics.CONSUMER_LAG.remove(gone.topic, str(gone.partition))
    for part, lag in lags.items():
        metrics.CONSUMER_LAG.labels(part.topic, str(part.partition)).set(lag)
    _published.clear()
    _published.update(lags)


def publish_table_sizes() -> None:
    """Set the key count of every table this worker holds."""
    for table in app.tables.values():
        metrics.TABLE_KEYS.labels(table.name).set(len(table.data))


@app.timer(interval=settings.metrics_sample_s)
async def sample_worker_gauges() -> None:
    """Refresh the sampled gauges."""
    metrics.REBALANCING.set(1 if app.rebalancing else 0)
    publish_table_sizes()
    if not app.rebalancing:
        publish_consumer_lag(sample_consumer_lag())


@functools.cache
def group_backlog() -> GroupBacklog:
    """Return the sampler of the worker's consumer group (Faust's), built at the first tick."""
    return GroupBacklog.connect(settings, topics.worker_group_role(settings.worker_role))


@app.timer(interval=settings.metrics_sample_s)
async def sample_group_backlog() -> None:
    """Refresh the backlog of the worker's whole group; a timer of its own, so a slow broker delays nothing
    else, and the admin calls block, so they run in a thread."""
    await asyncio.to_thread(group_backlog().publish)


@app.service
class WorkerTelemetry(Service):
    """Say the worker is up (with its build) while it runs."""

    async def on_start(self) -> None:
        metrics.start_worker_series()
        metrics.mark_up(ROLE)
        logger.info("worker up", extra={"stage": "worker"})

    async def on_stop(self) -> None:
        metrics.mark_down(ROLE)
