"""What the console reads from Kafka: every driver's state, the alerts and the dispatchers' actions.

The ``driver_state`` changelog is compacted and holds each driver's latest state, so it is read from the
beginning: a console that starts (or restarts) has the whole fleet as soon as it caught up. Alerts and
actions are read from ``WHATSUP_CONSOLE_ALERT_WINDOW_H`` ago. No consumer group: every console process reads
everything, so any of them answers for the whole fleet. The feed is ready once it has read up to the end
offsets it found at start; until then the API answers 503 rather than a partial fleet.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient

from base import topics
from base.exceptions import SchemaError
from base.kafka import client_config
from base.settings import Settings
from base.tls import aiokafka_config
from schemas.codecs import codec
from streams.console import metrics
from streams.console.fleet import Fleet
from streams.console.incidents import Incident, Incidents
from streams.deliveries.state import DriverState

log = logging.getLogger(__name__)
DRIVER_STATE_TABLE = "driver_state"


def changelog_topic(settings: Settings) -> str:
    """Return the Kafka name of the driver states' changelog (``streams.app.Table``'s naming)."""
    return f"{settings.app_id}-{DRIVER_STATE_TABLE}-changelog"


class ConsoleFeed:
    """Keeps a Fleet and Incidents up to date from Kafka, and tells listeners what changed."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fleet, self.incidents = Fleet(), Incidents()
        self.ready = asyncio.Event()
        self.listeners: list[Callable[[str, dict[str, Any]], None]] = []
        self._changelog = changelog_topic(settings)
        self._alerts = topics.qualified(topics.ALERTS, settings.topic_prefix)
        self._actions = topics.qualified(topics.ALERT_ACTIONS, settings.topic_prefix)
        self._decode_alert, self._decode_action = codec("Alert").decode, codec("AlertAction").decode
        self.changed: set[str] = set()  # drivers whose row changed since the page was last told

    def _tell(self, kind: str, incident: Incident | None) -> None:
        if incident is not None and self.ready.is_set():
            for listener in list(self.listeners):
                listener(kind, incident.public())

    def _apply(self, record: Any) -> None:
        """Apply one record; one that cannot be read is skipped and counted, never the end of the feed
        (whose task would end, leaving the console answering from a fleet that never changes again)."""
        topic = record.topic.removeprefix(self.settings.topic_prefix)
        try:
            self._apply_record(record)
        except SchemaError as exc:
            log.warning("skipped an undecodable record on %s (reason %s): %s", record.topic, exc.reason, exc)
            metrics.SKIPPED.labels(topic, exc.reason).inc()
        except Exception:
            log.exception(
                "skipped a record of %s that could not be applied (reason unreadable)", record.topic
            )
            metrics.SKIPPED.labels(topic, "unreadable").inc()

    def _apply_record(self, record: Any) -> None:
        if record.topic == self._changelog:
            state = DriverState.unpack(record.value) if record.value else None
            driver_id = record.key.decode()
            self.fleet.apply(driver_id, state)
            self.changed.add(driver_id)
        elif record.topic == self._alerts:
            self._tell("alert", self.incidents.on_alert(self._decode_alert(record.value)))
        elif record.topic == self._actions:
            self._tell("alert", self.incidents.on_action(self._decode_action(record.value)))

    def tell_fleet(self) -> None:
        """Tell listeners about every driver whose row changed since the last call (one event)."""
        if not self.changed or not self.ready.is_set():
            return
        changed, self.changed = self.changed, set()
        rows = self.fleet.rows
        payload = {
            "drivers": [rows[d].public() for d in sorted(changed) if d in rows],
            "removed": sorted(d for d in changed if d not in rows),
            "counts": self.fleet.counts(),
        }
        for listener in list(self.listeners):
            listener("fleet", payload)

    async def _assign(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, int]:
        """Assign every partition of the three topics, positioned; return the end offsets to catch up to."""
        names = (self._changelog, self._alerts, self._actions)
        admin = AdminClient(client_config(self.settings))
        while True:
            listed = (await asyncio.to_thread(admin.list_topics, timeout=10)).topics
            found = {name: sorted(listed[name].partitions) for name in names if name in listed}
            if len(found) == len(names) and all(found.values()):
                break
            missing = [name for name in names if not found.get(name)]
            log.info("waiting for topics %s (the worker creates the changelog when it starts)", missing)
            await asyncio.sleep(2.0)
        partitions = [TopicPartition(n, p) for n, parts in found.items() for p in parts]
        consumer.assign(partitions)
        # Explicit positions, not seek_to_beginning/seek_to_end: aiokafka's offset resets, mixed with
        # offsets_for_times on the same consumer, left a partition unfetched.
        since = int((time.time() - self.settings.console_alert_window_h * 3600) * 1000)
        windowed = [tp for tp in partitions if tp.topic != self._changelog]
        starts = await consumer.offsets_for_times(dict.fromkeys(windowed, since))
        begins = await consumer.beginning_offsets(partitions)
        ends = dict(await consumer.end_offsets(partitions))
        for tp in partitions:
            found = starts.get(tp)
            if tp.topic == self._changelog:
                consumer.seek(tp, begins[tp])
            else:
                consumer.seek(tp, found.offset if found is not None else ends[tp])
        return ends

    async def run(self) -> None:
        """Consume until cancelled."""
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.settings.kafka_bootstrap,
            enable_auto_commit=False,
            client_id=f"{self.settings.app_id}-console",
            max_partition_fetch_bytes=8 * 2**20,
            **aiokafka_config(self.settings),
        )
        await consumer.start()
        forgotten_at = 0.0
        try:
            ends = await self._assign(consumer)
            pending = {tp for tp, end in ends.items() if end > 0}
            if not pending:
                self.ready.set()
            while True:
                batches = await consumer.getmany(timeout_ms=500, max_records=5_000)
                for records in batches.values():
                    for record in records:
                        self._apply(record)
                if pending:
                    pending = {tp for tp in pending if await consumer.position(tp) < ends[tp]}
                if not pending and not self.ready.is_set():
                    self.ready.set()
                    self.changed.clear()  # a page opened now reads the whole fleet anyway
                    found = len(self.fleet.rows), len(self.incidents.by_id)
                    log.info("console caught up: %d drivers, %d incidents", *found)
                if time.monotonic() - forgotten_at > 60:
                    forgotten_at = time.monotonic()
                    window_ms = self.settings.console_alert_window_h * 3600 * 1000
                    self.incidents.forget_before(int(time.time() * 1000 - window_ms))
        finally:
            await consumer.stop()
