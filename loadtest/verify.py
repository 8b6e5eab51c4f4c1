"""Check a fleet run against its ground truth, and measure its latencies from the records themselves.

- Nothing lost, nothing twice: every ping upload the API answered 202 for has exactly one verdict on
  ``gps.pings.clean`` or ``gps.pings.rejected`` (a ping uploaded twice has two, the second a ``duplicate``),
  no ping is clean twice, and ClickHouse holds the same rows: each clean ping once in ``gps_pings``, each
  rejection in ``gps_pings_rejected``.
- Latencies from Kafka's own timestamps (the time each record was produced): the upload's arrival
  (``received_ts``, stamped by the API) to its verdict; a clean ping to the first driver state persisted
  with it (``driver_state`` changelog) and to any alert it raised; the arrival to the row visible in
  ClickHouse (``inserted_at``).
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from base.settings import Settings
from schemas.codecs import codec
from sinks.query import run_query

QUERY_SHARDS = 16


def read_topic(
    settings: Settings, topic: str, timeout_s: float = 600.0
) -> Iterator[tuple[int, bytes, bytes]]:
    """Yield (Kafka timestamp ms, key, value) of every record of ``topic`` up to its current end."""
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"fleet-verify-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 64 * 2**20,
        }
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + timeout_s
        while len(done) < len(ends):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{topic}: not read to its end within {timeout_s:.0f} s")
            for message in consumer.consume(5000, timeout=0.5):
                partition, offset = message.partition(), message.offset()
                if message.error() or partition is None or offset is None or offset >= ends[partition]:
                    continue
                value = message.value()
                if value is not None:
                    yield message.timestamp()[1], message.key() or b"", value
                if offset + 1 >= ends[partition]:
                    done.add(partition)
    finally:
        consumer.close()


@dataclass
class Accounting:
    """Uploads of each ping answered 202 against the verdicts and rows found for it."""

    accepted_uploads: int = 0
    accepted_pings: int = 0
    lost: int = 0
    extra: int = 0
    clean_twice: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost and nothing twice."""
        return self.lost == 0 and self.clean_twice == 0 and self.extra == 0


def account(
    accepted: list[str], clean: collections.Counter[str], rejected: collections.Counter[str], sent: set[str]
) -> Accounting:
    """Compare accepted uploads per ping id with the clean and rejected verdicts (or rows) per ping id.

    A verdict beyond the accepted uploads is ``extra`` unless an upload of that ping was sent and not
    answered 202 (a timeout may still have landed: nothing was promised for it, either way).
    """
    expected = collections.Counter(accepted)
    result = Accounting(accepted_uploads=len(accepted), accepted_pings=len(expected))
    for ping_id, uploads in expected.items():
        got = clean.get(ping_id, 0) + rejected.get(ping_id, 0)
        if got < uploads:
            result.lost += uploads - got
            if len(result.examples) < 5:
                result.examples.append(f"{ping_id}: {uploads} upload(s) accepted, {got} verdict(s)")
        elif got > uploads and ping_id not in sent:
            result.extra += got - uploads
    for ping_id, n in clean.items():
        if n > 1:
            result.clean_twice += 1
            if len(result.examples) < 5:
                result.examples.append(f"{ping_id}: clean {n} times")
    for ping_id in (clean.keys() | rejected.keys()) - expected.keys() - sent:
        result.extra += clean.get(ping_id, 0) + rejected.get(ping_id, 0)
    return result


@dataclass
class TopicFindings:
    """What the verdict topics hold, and the latencies read from them."""

    clean: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)
    reasons: collections.Counter[str] = field(default_factory=collections.Counter)
    verdict_latency_s: list[float] = field(default_factory=list)
    fix_latency_s: list[float] = field(default_factory=list)
    clean_ts: dict[tuple[str, int], int] = field(default_factory=dict)


def read_verdicts(
    settings: Settings, clean_topic: str, rejected_topic: str, window: tuple[float, float]
) -> TopicFindings:
    """Count verdicts per ping id; latency from arrival to verdict for uploads received inside ``window``."""
    findings = TopicFindings()
    lo, hi = window[0] * 1000, window[1] * 1000
    decode_clean, decode_rejected = codec("CleanPing").decode, codec("RejectedPing").decode
    for ts, _, value in read_topic(settings, clean_topic):
        ping = decode_clean(value)
        findings.clean[ping["ping_id"]] += 1
        findings.clean_ts.setdefault((ping["driver_id"], ping["device_ts"]), ts)
        if lo <= ping["received_ts"] < hi:
            findings.verdict_latency_s.append((ts - ping["received_ts"]) / 1000)
            if not ping["late"]:  # the phone's fix to its verdict, the phone's own batching included
                findings.fix_latency_s.append((ts - ping["device_ts"]) / 1000)
    for ts, _, value in read_topic(settings, rejected_topic):
        rejection = decode_rejected(value)
        findings.rejected[rejection.get("ping_id") or ""] += 1
        findings.reasons[rejection["reason"]] += 1
        received = rejection.get("received_ts")
        if received is not None and lo <= received < hi:
            findings.verdict_latency_s.append((ts - received) / 1000)
    return findings


def state_latencies(
    settings: Settings, changelog: str, clean_ts: dict[tuple[str, int], int], window: tuple[float, float]
) -> list[float]:
    """Seconds from each clean ping on its topic to the first driver state persisted with it as last fix."""
    lo, hi = window[0] * 1000, window[1] * 1000
    seen: set[tuple[str, int]] = set()
    latencies = []
    for ts, key, value in read_topic(settings, changelog):
        try:
            fix = json.loads(value).get("last_fix")
        except ValueError:
            continue
        if not fix:
            continue
        point = (key.decode(), fix["ts"])
        if point in seen:
            continue
        seen.add(point)
        produced = clean_ts.get(point)
        if produced is not None and lo <= produced < hi:
            latencies.append((ts - produced) / 1000)
    return latencies


def alert_latencies(
    settings: Settings, topic: str, window: tuple[float, float]
) -> tuple[list[float], collections.Counter[str]]:
    """Seconds from the record that raised each alert (``detected_at``) to the alert on its topic."""
    lo, hi = window[0] * 1000, window[1] * 1000
    decode = codec("Alert").decode
    latencies, kinds = [], collections.Counter[str]()
    for ts, _, value in read_topic(settings, topic):
        alert = decode(value)
        kinds[alert["kind"]] += 1
        if lo <= alert["detected_at"] < hi:
            latencies.append((ts - alert["detected_at"]) / 1000)
    return latencies, kinds


def clickhouse_counts(settings: Settings) -> tuple[collections.Counter[str], collections.Counter[str]]:
    """Rows per ping id in ``gps_pings`` and in ``gps_pings_rejected`` (read in shards of drivers)."""
    clean: collections.Counter[str] = collections.Counter()
    rejected: collections.Counter[str] = collections.Counter()
    for table, counter in (("gps_pings", clean), ("gps_pings_rejected", rejected)):
        for shard in range(QUERY_SHARDS):
            rows = run_query(
                settings,
                f"SELECT ping_id, count() AS n FROM {table} "
                f"WHERE cityHash64(driver_id) % {QUERY_SHARDS} = {shard} GROUP BY ping_id",
            )
            for row in rows:
                counter[str(row["ping_id"])] += int(row["n"])
    return clean, rejected


def visible_latencies(settings: Settings, window: tuple[float, float]) -> dict[str, float]:
    """Quantiles of arrival (``received_ts``) to visible (``inserted_at``) of clean pings in ``window``."""
    lo, hi = int(window[0] * 1000), int(window[1] * 1000)
    (row,) = run_query(
        settings,
        "SELECT count() AS n, quantileExact(0.5)(d) AS p50, quantileExact(0.99)(d) AS p99, max(d) AS worst "
        "FROM (SELECT toUnixTimestamp64Milli(inserted_at) - toUnixTimestamp64Milli(received_ts) AS d "
        f"FROM gps_pings WHERE toUnixTimestamp64Milli(received_ts) BETWEEN {lo} AND {hi})",
    )
    return {k: float(v) / (1 if k == "n" else 1000) for k, v in row.items()}


def describe(result: Any) -> str:
    """One line for a progress log."""
    return json.dumps(result, default=str)[:300]
