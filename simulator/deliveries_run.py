"""Play a simulated delivery fleet into Kafka in real time: pings to the raw topic, delivery events too.

Each record goes out when the wall clock reaches its ``upload_at`` (event time and wall clock share one
clock, as in production), so the worker's wall-clock timers and the pings' event time agree. History pings
(the hour before the run, for the learned speeds) go out at once.
"""

from __future__ import annotations

import heapq
import time
import uuid
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from schemas.codecs import codec
from simulator.deliveries import DriverDay


@dataclass
class PlayReport:
    """What a play sent, and how far behind its schedule it ever fell."""

    pings: int = 0
    events: int = 0
    max_lag_ms: int = 0
    seconds: float = 0.0


def timeline(
    days: list[DriverDay], history: list[dict[str, Any]]
) -> list[tuple[int, int, str, dict[str, Any]]]:
    """Merge every record into one schedule of (upload_at, tie-break, kind, record)."""
    merged: list[tuple[int, int, str, dict[str, Any]]] = []
    n = 0
    for ping in history:
        merged.append((0, n, "ping", ping))
        n += 1
    for day in days:
        for ping in day.pings:
            merged.append((ping["upload_at"], n, "ping", ping))
            n += 1
        for event in day.events:
            merged.append((event["upload_at"], n, "event", event))
            n += 1
    heapq.heapify(merged)
    return [heapq.heappop(merged) for _ in range(len(merged))]


def play(
    days: list[DriverDay],
    settings: Settings,
    *,
    history: list[dict[str, Any]] | None = None,
    clock: Any = time.time,
    sleep: Any = time.sleep,
) -> PlayReport:
    """Produce the schedule, each record when its time comes; return once the last one is acknowledged."""
    report = PlayReport()
    started = time.perf_counter()
    ping_topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    event_topic = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
    gps, delivery_event = codec("GpsPing").encode, codec("DeliveryEvent").encode
    producer = make_producer(settings, **{"linger.ms": 20})
    for upload_at, _, kind, record in timeline(days, history or []):
        now = int(clock() * 1000)
        if upload_at > now:
            producer.poll(0)
            sleep((upload_at - now) / 1000)
            now = upload_at
        report.max_lag_ms = max(report.max_lag_ms, now - upload_at) if upload_at else report.max_lag_ms
        body = {k: v for k, v in record.items() if k != "upload_at"}
        if kind == "ping":
            value, topic = gps({**body, "received_ts": now}), ping_topic
            report.pings += 1
        else:
            value, topic = delivery_event(body), event_topic
            report.events += 1
        while True:
            try:
                producer.produce(topic, key=record["driver_id"].encode(), value=value)
                break
            except BufferError:
                producer.poll(0.05)
    if producer.flush(60) != 0:
        raise RuntimeError("records left undelivered after 60 s")
    report.seconds = time.perf_counter() - started
    return report


def collect(settings: Settings, topic: str, schema: str, timeout_s: float = 60.0) -> list[dict[str, Any]]:
    """Read a topic from the beginning up to its current end, decoding each value with ``schema``."""
    decode = codec(schema).decode
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"collect-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        values: list[dict[str, Any]] = []
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends) and time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                raw = message.value()
                if message.error() or raw is None:
                    continue
                values.append(decode(raw))
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None and offset + 1 >= ends[partition]:
                    done.add(partition)
        if len(done) < len(ends):
            raise RuntimeError(f"{topic}: not read to its end within {timeout_s} s")
        return values
    finally:
        consumer.close()
