"""The clean_pings agent end to end inside Faust, without a broker."""

from __future__ import annotations

import asyncio
from typing import Any

import h3

from schemas.codecs import codec
from streams.app import gps_pings_clean_topic, gps_pings_rejected_topic
from streams.pings.agents import clean_pings, driver_ping_state
from streams.pings.state import DriverPingState


def _ping(ping_id: str, lat: float, lon: float, seq: int = 1) -> dict[str, Any]:
    return {
        "ping_id": ping_id,
        "driver_id": "driver-7",
        "device_ts": 1_790_000_000_000,
        "lat": lat,
        "lon": lon,
        "accuracy_m": 5.0,
        "speed_mps": None,
        "heading": None,
        "battery": 80.0,
        "seq": seq,
        "source": "app",
        "received_ts": 1_790_000_001_000,
    }


async def _feed(records: list[bytes], sent: Any, expected_outputs: int) -> None:
    async with clean_pings.test_context() as agent:
        for raw in records:
            await agent.put(raw, key=b"driver-7")
        for _ in range(100):  # the agent batches: wait for its delivery to catch up
            if (
                sum(1 for t in sent.by_topic if "changelog" not in t for _ in sent.by_topic[t])
                >= expected_outputs
            ):
                break
            await asyncio.sleep(0.02)


def test_valid_ping_is_snapped_and_sent_clean(sent: Any) -> None:
    asyncio.run(_feed([codec("GpsPing").encode(_ping("p1", -23.5613, -46.6565))], sent, 1))

    [clean] = sent.values(gps_pings_clean_topic)
    assert clean["ping_id"] == "p1"
    assert clean["h3_r9"] == int(h3.latlng_to_cell(-23.5613, -46.6565, 9), 16)
    assert clean["h3_r7"] == int(h3.latlng_to_cell(-23.5613, -46.6565, 7), 16)
    assert sent.keys(gps_pings_clean_topic) == [b"driver-7"]
    assert sent.values(gps_pings_rejected_topic) == []


def test_bad_records_are_dead_lettered_and_the_stream_goes_on(sent: Any) -> None:
    gps = codec("GpsPing")
    asyncio.run(
        _feed(
            [
                b"\x00garbage",
                gps.encode(_ping("null", 0.0, 0.0, seq=1)),
                gps.encode(_ping("nan", float("nan"), -46.6, seq=2)),
                gps.encode(_ping("ok", -23.5, -46.6, seq=3)),
            ],
            sent,
            4,
        )
    )

    rejected = sent.values(gps_pings_rejected_topic)
    assert [(r["reason"], r["ping_id"]) for r in rejected] == [
        ("malformed", None),
        ("null_island", "null"),
        ("invalid_coordinates", "nan"),
    ]
    assert rejected[0]["raw_payload"] == b"\x00garbage"
    assert rejected[1]["ping"]["lat"] == 0.0
    assert [c["ping_id"] for c in sent.values(gps_pings_clean_topic)] == ["ok"]


def test_state_goes_to_the_changelog_with_the_offset_it_has_applied(sent: Any) -> None:
    gps = codec("GpsPing")
    asyncio.run(
        _feed([gps.encode(_ping(f"p{i}", -23.5 + i * 1e-4, -46.6, seq=i)) for i in range(3)], sent, 3)
    )

    key, packed = sent.changelog()[-1]
    state = DriverPingState.unpack(packed)
    assert key == b"driver-7"
    assert state.last_offset == 2 and len(state.fixes) == 3
    assert state.seq_blocks == [[0, 2, 1_790_000_000_000, 1_790_000_000_000, None]]


def test_records_a_recovered_state_has_already_applied_are_not_judged_again(sent: Any) -> None:
    gps = codec("GpsPing")
    recovered = DriverPingState(last_offset=1)  # as if the worker died after persisting offsets 0 and 1
    driver_ping_state.data[b"driver-7"] = recovered.pack()
    asyncio.run(_feed([gps.encode(_ping(f"p{i}", -23.5, -46.6, seq=i)) for i in range(3)], sent, 1))

    assert [c["ping_id"] for c in sent.values(gps_pings_clean_topic)] == ["p2"]
    assert sent.values(gps_pings_rejected_topic) == []


def test_a_record_without_value_or_with_a_broken_key_is_dead_lettered(sent: Any) -> None:
    async def feed() -> None:
        async with clean_pings.test_context() as agent:
            await agent.put(None, key=b"driver-7")
            await agent.put(codec("GpsPing").encode(_ping("p1", -23.5, -46.6)), key=b"\xff\xfe")
            await agent.put(codec("GpsPing").encode(_ping("p2", -23.5, -46.6, seq=2)), key=b"driver-7")
            for _ in range(100):
                if sent.outputs() >= 3:
                    break
                await asyncio.sleep(0.02)

    asyncio.run(feed())
    rejected = sent.values(gps_pings_rejected_topic)
    assert [r["reason"] for r in rejected] == ["malformed", "malformed"]
    assert [c["ping_id"] for c in sent.values(gps_pings_clean_topic)] == ["p2"]
