"""Learned cell speeds on the real broker: pings in, sampled by the tracking agent, a decayed mean per cell in
the changelog, replicated."""

from __future__ import annotations

import asyncio
import contextlib

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from schemas.codecs import codec
from streams.deliveries.cell_speeds import SpeedConfig, cell_key, hour_of_week, lookup
from streams.deliveries.speeds import CellSpeedReplica, tail_changelog
from streams.pings.rules import snap
from tests.integration.stack import WorkerProcess
from tests.integration.test_clean_pings_on_broker import synthetic_pings
from tests.sink_records import clean_ping


async def _replicate(settings: Settings, samples: int, timeout_s: float) -> CellSpeedReplica:
    replica = CellSpeedReplica()
    changelog = f"{settings.app_id}-cell_speeds-changelog"
    task = asyncio.create_task(
        tail_changelog(changelog, settings.partitions, settings.kafka_bootstrap, replica, poll_ms=200)
    )
    try:
        for _ in range(int(timeout_s * 5)):
            if sum(v.weight for v in replica.speeds.values()) >= samples - 0.01:
                break
            await asyncio.sleep(0.2)
    finally:
        task.cancel()
        # Let the tail stop its consumer inside this loop: a connection left to the garbage collector
        # surfaces later, in whichever test is running, as an unraisable ResourceWarning.
        with contextlib.suppress(asyncio.CancelledError):
            await task
    return replica


def test_worker_learns_cell_speeds_that_any_process_can_replicate(
    stack_settings: Settings, worker: WorkerProcess
) -> None:
    pings = synthetic_pings("cs", drivers=6, pings_per_driver=12)
    raw_topic = topics.qualified(topics.GPS_PINGS_RAW, stack_settings.topic_prefix)
    producer = make_producer(stack_settings)
    # A clean ping with no driver id: the tracking agent skips it, so it teaches no cell (Rio, not São Paulo).
    keyless = {**clean_ping("cs-keyless", 1, lat=-22.9), "derived_speed_mps": 10.0}
    clean_topic = topics.qualified(topics.GPS_PINGS_CLEAN, stack_settings.topic_prefix)
    producer.produce(clean_topic, value=codec("CleanPing").encode(keyless))
    gps = codec("GpsPing")
    for ping in pings:
        producer.produce(raw_topic, key=ping["driver_id"].encode(), value=gps.encode(ping))
    assert producer.flush(30) == 0

    valid = [p for p in pings if -90 <= p["lat"] <= 90 and (p["lat"], p["lon"]) != (0, 0)]
    expected = {cell_key(snap(p["lat"], p["lon"])[1], hour_of_week(p["device_ts"])) for p in valid}
    # Every accepted fix but each driver's first carries a derived speed.
    samples = len(valid) - 6
    replica = asyncio.run(_replicate(stack_settings, samples, timeout_s=60))

    assert set(replica.speeds) == expected, worker.log_tail()
    assert abs(sum(v.weight for v in replica.speeds.values()) - samples) < 0.01
    for key in expected:
        # Every driver rides 50 m per 5 s; the steps around a rejected fix span 10 s at the same speed.
        assert abs(replica.speeds[key].speed_mps - 10.0) < 0.05
    first = valid[0]
    cell = snap(first["lat"], first["lon"])[1]
    assert lookup(replica.speeds, cell, first["device_ts"], SpeedConfig()) is not None
