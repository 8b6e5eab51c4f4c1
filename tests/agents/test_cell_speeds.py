"""The learned-speed agents inside Faust, without a broker: clean pings in, a readable speed per cell out."""

from __future__ import annotations

import asyncio
from typing import Any

from streams.deliveries import speeds
from streams.deliveries.cell_speeds import CellSpeed, cell_key, hour_of_week
from tests.unit.test_cell_speeds import CELL, MONDAY_0830


def _clean(i: int, speed: float | None, late: bool = False, cell: int = CELL) -> dict[str, Any]:
    return {
        "ping_id": f"p{i}",
        "driver_id": f"driver-{i % 3}",
        "device_ts": MONDAY_0830 + i * 1000,
        "h3_r7": cell,
        "derived_speed_mps": speed,
        "late": late,
    }


async def _wait_for(condition: Any) -> None:
    for _ in range(200):  # the agents batch: wait until their delivery catches up
        if condition():
            return
        await asyncio.sleep(0.02)


async def _learn(pings: list[dict[str, Any]], sent: Any) -> list[tuple[bytes, Any]]:
    topic = speeds.cell_speed_samples_topic.get_topic_name()
    async with speeds.learn_cell_speeds.test_context() as agent:
        for ping in pings:
            await agent.put(ping, key=ping["driver_id"])
        await _wait_for(lambda: topic in sent.by_topic)
        await asyncio.sleep(0.05)
    return sent.by_topic.get(topic, [])


def test_clean_pings_become_one_sum_per_cell_key(sent: Any) -> None:
    other = CELL + (1 << 40)
    pings = [_clean(i, 6.0 + i % 3) for i in range(9)]
    pings += [_clean(20, 0.2), _clean(21, 9.0, late=True), _clean(22, None), _clean(23, 12.0, cell=other)]
    records = asyncio.run(_learn(pings, sent))
    by_key = {key.decode(): CellSpeed.unpack(value) for key, value in records}
    how = hour_of_week(MONDAY_0830)
    # Drivers are mixed; the records are keyed by cell so one worker owns each cell's mean.
    assert by_key[cell_key(CELL, how)] == CellSpeed(63.0, 9.0, MONDAY_0830 + 8000)
    assert by_key[cell_key(other, how)] == CellSpeed(12.0, 1.0, MONDAY_0830 + 23000)
    assert len(records) == 2


async def _fold(records: list[tuple[bytes, bytes]], sent: Any) -> None:
    changelog = speeds.cell_speeds.changelog_topic.get_topic_name()
    async with speeds.fold_cell_speeds.test_context() as agent:
        for key, value in records:
            await agent.put(value, key=key.decode())
        await _wait_for(lambda: len(sent.by_topic.get(changelog, [])) >= 1)
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
