"""The learned-speed agents inside Faust, without a broker: clean pings in, a readable speed per cell out."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from streams.deliveries import agents, speeds
from streams.deliveries.agents import CLEAN_TOPIC, track_drivers
from streams.deliveries.cell_speeds import CellSpeed, cell_key, hour_of_week
from tests.agents.conftest import SentRecords
from tests.agents.test_track_drivers import Feed, clean_ping, settle
from tests.unit.test_cell_speeds import CELL, MONDAY_0830

Ping = tuple[bytes, bytes, int]  # the record's key, its value, its timestamp


def _clean(i: int, speed: float | None, late: bool = False, cell: int = CELL, key: bytes = b"") -> Ping:
    driver, ts = f"driver-{i % 3}", MONDAY_0830 + i * 1000
    value = clean_ping(i, ts, -23.55, driver_id=driver, h3_r7=cell, derived_speed_mps=speed, late=late)
    return key or driver.encode(), value, ts


async def _learn(records: list[tuple[Ping, int]], sent: SentRecords) -> dict[str, CellSpeed]:
    """Feed clean pings at their offsets (-1: the next, as the last one's must be) to the tracking agent;
    return each cell key's sums, added up over the batches they came in."""
    async with track_drivers.test_context() as agent:
        feed = Feed(agent)
        for (key, value, ts), offset in records:
            await feed.put(CLEAN_TOPIC, value, ts, key=key, offset=offset)
        last = feed.offsets[CLEAN_TOPIC] - 1
        await settle(lambda: agents.processed.get((CLEAN_TOPIC, 0)) == last)
        async with agents.state_lock:  # held by the agent until the batch's records are delivered
            pass
    sums: dict[str, CellSpeed] = {}
    for key, raw in sent.by_topic.get(speeds.cell_speed_samples_topic.get_topic_name(), []):
        part, prev = CellSpeed.unpack(raw), sums.get(key.decode(), CellSpeed(0.0, 0.0, 0))
        sums[key.decode()] = CellSpeed(
            prev.speed_mps + part.speed_mps, prev.weight + part.weight, max(prev.last_ts, part.last_ts)
        )
    return sums


def test_the_tracking_agent_sums_the_clean_pings_it_accepts_per_cell_key(
    captured: SentRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(speeds, "replica", speeds.CellSpeedReplica())  # nothing learned: no crawl filter
    other = CELL + (1 << 40)
    pings = [_clean(i, 6.0 + i % 3) for i in range(9)]
    pings += [_clean(20, 0.2), _clean(21, 9.0, late=True), _clean(22, None), _clean(23, 12.0, cell=other)]
    # What the tracking agent skips is not sampled: a redelivered offset the driver's state has applied, a
    # key that is not a driver id, bytes that are not a clean ping.
    replays = [(pings[0], 0), (pings[3], 3)]
    dropped = [_clean(24, 9.0, key=b"\xff"), (b"driver-0", b"\xc3\x01 not avro", MONDAY_0830)]
    by_key = asyncio.run(_learn([(p, -1) for p in pings] + replays + [(p, -1) for p in dropped], captured))
    how = hour_of_week(MONDAY_0830)
    # Drivers are mixed; the records are keyed by cell so one worker owns each cell's mean.
    assert by_key == {
        cell_key(CELL, how): CellSpeed(63.0, 9.0, MONDAY_0830 + 8000),
        cell_key(other, how): CellSpeed(12.0, 1.0, MONDAY_0830 + 23000),
    }


async def _fold(records: list[tuple[bytes, bytes]], sent: Any) -> None:
    changelog = speeds.cell_speeds.changelog_topic.get_topic_name()
    async with speeds.fold_cell_speeds.test_context() as agent:
        for key, value in records:
            await agent.put(value, key=key.decode())
        await settle(lambda: len(sent.by_topic.get(changelog, [])) >= 1)
        await asyncio.sleep(0.05)


def test_sums_fold_into_the_table_its_changelog_and_the_lookup(sent: Any) -> None:
    key = cell_key(CELL, hour_of_week(MONDAY_0830)).encode()
    speeds.replica.speeds.clear()
    records = [
        (key, speeds.encode_sum(24.0, 4, MONDAY_0830)),
        (key, speeds.encode_sum(48.0, 4, MONDAY_0830 + 1000)),
        (key, b"not a packed sum"),
    ]
    asyncio.run(_fold(records, sent))
    stored = CellSpeed.unpack(speeds.cell_speeds.data[key])
    # One second of decay between the two sums is negligible against a two-week half-life.
    assert abs(stored.weight - 8.0) < 1e-5
    assert abs(stored.speed_mps - 9.0) < 1e-5
    [(log_key, log_value)] = sent.changelog()
    assert (log_key, CellSpeed.unpack(log_value)) == (key, stored)
    assert speeds.lookup_cell_speed(CELL, MONDAY_0830) == stored.speed_mps
    assert speeds.lookup_cell_speed(CELL + 1, MONDAY_0830) is None


def test_the_replica_reads_changelog_records_and_skips_bad_ones() -> None:
    replica = speeds.CellSpeedReplica()
    key = cell_key(CELL, hour_of_week(MONDAY_0830)).encode()
    replica.apply(key, CellSpeed(7.0, 10.0, MONDAY_0830).pack())
    replica.apply(key + b"x", b"short")
    replica.apply(None, b"")
    assert replica.lookup(CELL, MONDAY_0830) == 7.0
    assert list(replica.speeds) == [key.decode()]
