"""Avro records through the clean_pings agent of a real worker process on the real broker."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import h3

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from schemas.codecs import codec
from tests.integration.stack import WorkerProcess, read_topic


def synthetic_pings(run_id: str, drivers: int, pings_per_driver: int) -> list[dict[str, Any]]:
    """Drivers riding north 50 m per 5 s, with a null-island fix and a corrupt latitude among them."""
    now_ms = int(time.time() * 1000)
    pings = []
    for d in range(drivers):
        for i in range(pings_per_driver):
            lat, lon = -23.6 + d * 0.01 + i * 50 / 111_195, -46.63
            if i == 3 and d % 5 == 0:
                lat, lon = 0.0, 0.0
            elif i == 4 and d % 7 == 0:
                lat = 123.0
            pings.append(
                {
                    "ping_id": f"{run_id}:d{d}:{i}",
                    "driver_id": f"{run_id}:d{d}",
                    "device_ts": now_ms - (pings_per_driver - i) * 5000,
                    "lat": lat,
                    "lon": lon,
                    "accuracy_m": 5.0,
                    "speed_mps": 10.0,
                    "heading": None,
                    "battery": None,
                    "seq": i,
                    "source": "simulator",
                    "received_ts": now_ms,
                }
            )
    return pings


def test_every_ping_comes_out_clean_or_rejected_with_its_reason(
    stack_settings: Settings, worker: WorkerProcess
) -> None:
    pings = synthetic_pings("it", drivers=10, pings_per_driver=12)
    raw_topic = topics.qualified(topics.GPS_PINGS_RAW, stack_settings.topic_prefix)
    producer = make_producer(stack_settings)
    gps = codec("GpsPing")
    for ping in pings:
        producer.produce(raw_topic, key=ping["driver_id"].encode(), value=gps.encode(ping))
    producer.produce(raw_topic, key=b"it:d1", value=b"\xc3\x01 truncated")
    assert producer.flush(30) == 0

    invalid = {p["ping_id"] for p in pings if not (-90 <= p["lat"] <= 90) or (p["lat"], p["lon"]) == (0, 0)}
    assert invalid, "the synthetic run must contain broken fixes"
    clean = read_topic(
        stack_settings,
        topics.qualified(topics.GPS_PINGS_CLEAN, stack_settings.topic_prefix),
        "CleanPing",
        until=lambda records: len(records) >= len(pings) - len(invalid),
    )
    rejected = read_topic(
        stack_settings,
        topics.qualified(topics.GPS_PINGS_REJECTED, stack_settings.topic_prefix),
        "RejectedPing",
        until=lambda records: len(records) >= len(invalid) + 1,
    )

    by_id = {p["ping_id"]: p for p in pings}
    assert sorted(r.value["ping_id"] for r in clean) == sorted(set(by_id) - invalid)
    for record in clean:
        original = by_id[record.value["ping_id"]]
        assert record.key == original["driver_id"].encode()
        assert record.value["h3_r9"] == int(h3.latlng_to_cell(original["lat"], original["lon"], 9), 16)
    expected = Counter(("null_island" if by_id[i]["lat"] == 0 else "invalid_coordinates", i) for i in invalid)
    expected[("malformed", None)] += 1
    assert Counter((r.value["reason"], r.value["ping_id"]) for r in rejected) == expected

    # Co-partitioning: librdkafka (murmur2) and the worker's aiokafka put a driver on the same partition.
    raw = read_topic(stack_settings, raw_topic, "GpsPing", until=lambda records: len(records) >= len(pings))
    raw_partition = {r.key: r.partition for r in raw}
    assert len(set(raw_partition.values())) > 1, "ten drivers should spread over several partitions"
    assert all(r.partition == raw_partition[r.key] for r in clean + rejected)
