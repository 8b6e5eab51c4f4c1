"""Stream synthetic driver pings through a running worker and show what came out on the other side."""

from __future__ import annotations

import math
import random
import time
import uuid
from collections import Counter
from typing import Any

from confluent_kafka import Consumer

from schemas.codecs import codec
from streams import topics
from streams.kafka import make_producer
from streams.settings import Settings

SAO_PAULO = (-23.5505, -46.6333)


def synthetic_pings(run_id: str, drivers: int, pings_per_driver: int, seed: int = 7) -> list[dict[str, Any]]:
    """Make pings of drivers riding through São Paulo, with a few broken fixes among them."""
    rng = random.Random(seed)
    now_ms = int(time.time() * 1000)
    pings = []
    for d in range(drivers):
        lat = SAO_PAULO[0] + rng.uniform(-0.08, 0.08)
        lon = SAO_PAULO[1] + rng.uniform(-0.08, 0.08)
        bearing = rng.uniform(0, 2 * math.pi)
        for i in range(pings_per_driver):
            # About 10 m/s for 5 s between fixes: a motorcycle in city traffic.
            lat += 50 / 111_320 * math.cos(bearing)
            lon += 50 / (111_320 * math.cos(math.radians(lat))) * math.sin(bearing)
            fix_lat, fix_lon = lat, lon
            if i == 3 and d % 5 == 0:
                fix_lat, fix_lon = 0.0, 0.0  # a phone that reports null island before its first fix
            elif i == 4 and d % 7 == 0:
                fix_lat = 123.0  # a corrupt latitude
            pings.append(
                {
                    "ping_id": f"{run_id}:d{d}:{i}",
                    "driver_id": f"{run_id}:d{d}",
                    "device_ts": now_ms - (pings_per_driver - i) * 5000,
                    "lat": fix_lat,
                    "lon": fix_lon,
                    "accuracy_m": round(rng.uniform(3, 15), 1),
                    "speed_mps": 10.0,
                    "heading": None,
                    "battery": None,
                    "seq": i,
                    "source": "simulator",
                    "received_ts": now_ms,
                }
            )
    return pings


def run_demo(settings: Settings, *, drivers: int, pings_per_driver: int, timeout_s: float) -> int:
    """Produce the pings, wait for every one to come out clean or rejected, print a summary."""
    run_id = f"demo-{uuid.uuid4().hex[:6]}"
    pings = synthetic_pings(run_id, drivers, pings_per_driver)
    raw_topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    clean_topic = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    rejected_topic = topics.qualified(topics.GPS_PINGS_REJECTED, settings.topic_prefix)

    producer = make_producer(settings)
    gps_ping = codec("GpsPing")
    for ping in pings:
        producer.produce(raw_topic, key=ping["driver_id"].encode(), value=gps_ping.encode(ping))
    producer.produce(raw_topic, key=f"{run_id}:d0".encode(), value=b"not avro at all")
    producer.flush(30)
    expected = len(pings) + 1
    print(f"produced {len(pings)} pings of {drivers} drivers (+1 malformed record) to {raw_topic}")

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": run_id,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe([clean_topic, rejected_topic])
    clean_codec, rejected_codec = codec("CleanPing"), codec("RejectedPing")
    clean: list[dict[str, Any]] = []
    reasons: Counter[str] = Counter()
    deadline = time.monotonic() + timeout_s
    try:
        while len(clean) + sum(reasons.values()) < expected and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                value = message.value()
                if message.error() or value is None or not (message.key() or b"").startswith(run_id.encode()):
                    continue
                if message.topic() == clean_topic:
                    clean.append(clean_codec.decode(value))
                else:
                    reasons[rejected_codec.decode(value)["reason"]] += 1
    finally:
        consumer.close()

    print(f"{clean_topic}: {len(clean)} clean pings")
    for row in clean[:5]:
        print(f"  {row['ping_id']:<22} lat={row['lat']:.5f} lon={row['lon']:.5f} h3_r9={row['h3_r9']:x}")
    print(f"{rejected_topic}: {sum(reasons.values())} rejected")
    for reason, count in sorted(reasons.items()):
        print(f"  {reason:<22} {count}")
    seen = len(clean) + sum(reasons.values())
    if seen != expected:
        print(f"only {seen} of {expected} records came out within {timeout_s:.0f}s")
        return 1
    print(f"all {expected} records accounted for")
    return 0
