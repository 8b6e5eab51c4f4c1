"""Bad records under ``test_context()``: each skipped with a counted reason, and the next one applied."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from prometheus_client import REGISTRY

from streams.deliveries import agents
from streams.deliveries.agents import CLEAN_TOPIC, track_drivers
from tests.agents.conftest import SentRecords
from tests.agents.test_track_drivers import DRIVER, T0, Feed, clean_ping, settle

TRACK_MALFORMED = {"stage": "track", "reason": "malformed"}


def _rejected() -> float:
    return REGISTRY.get_sample_value("whatsup_pings_rejected_total", TRACK_MALFORMED) or 0.0


def test_a_tombstone_and_bad_bytes_among_clean_pings_are_counted_and_the_next_ping_applies(
    captured: SentRecords,
) -> None:
    # Found by benches/fuzz.py: a record with a null value on gps.pings.clean raised TypeError out of
    # track_drivers and stopped the worker; bad bytes were logged but counted nowhere.
    before = _rejected()

    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(CLEAN_TOPIC, None, T0)  # type: ignore[arg-type]
            await feed.put(CLEAN_TOPIC, b"\xc3\x01 not avro", T0)
            await feed.put(CLEAN_TOPIC, clean_ping(1, T0, -23.55), T0 + 500)
            await settle(lambda: agents.lookup(DRIVER) is not None)

    asyncio.run(run())
    state = agents.lookup(DRIVER)
    assert state is not None and state.last_fix is not None and state.last_fix.ts == T0
    assert _rejected() == before + 2


def test_a_clean_ping_without_a_utf8_key_is_counted(captured: SentRecords) -> None:
    # Found by benches/fuzz.py: track_drivers dropped such pings without a trace (no log, no counter).
    labels = {"stage": "track", "reason": "wrong_key"}
    before = REGISTRY.get_sample_value("whatsup_pings_rejected_total", labels) or 0.0

    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(CLEAN_TOPIC, clean_ping(1, T0, -23.55), T0, key=b"\xff\xfe")
            await feed.put(CLEAN_TOPIC, clean_ping(2, T0, -23.55), T0 + 500)
            await settle(lambda: agents.lookup(DRIVER) is not None)

    asyncio.run(run())
    assert REGISTRY.get_sample_value("whatsup_pings_rejected_total", labels) == before + 1


@pytest.mark.parametrize(
    "extra",
    [{"lat": float("inf")}, {"lon": float("nan")}, {"lat": 91.0}, {"step_m": float("-inf")},
     {"device_ts": 10**15}, {"speed_mps": float("nan")}],
)  # fmt: skip
def test_a_clean_ping_no_cleaning_would_pass_is_counted_and_the_next_ping_applies(
    captured: SentRecords, extra: dict[str, Any]
) -> None:
    # Found by benches/fuzz.py: a CleanPing with an infinite latitude (well-formed Avro) raised "math domain
    # error" in haversine_m inside track_drivers; the worker stopped, and stopped again on every replay.
    before = _rejected()
    bad = {"device_ts": T0, "lat": -23.55, **extra}
    ts, lat = bad.pop("device_ts"), bad.pop("lat")

    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(CLEAN_TOPIC, clean_ping(1, T0 - 5_000, -23.55), T0)
            await feed.put(CLEAN_TOPIC, clean_ping(2, ts, lat, **bad), T0 + 100)
            await feed.put(CLEAN_TOPIC, clean_ping(3, T0 + 5_000, -23.551), T0 + 5_500)
            await settle(lambda: _last_fix_ts() == T0 + 5_000)

    asyncio.run(run())
    assert _last_fix_ts() == T0 + 5_000
    assert _rejected() == before + 1


def _last_fix_ts() -> int | None:
    state = agents.lookup(DRIVER)
    return state.last_fix.ts if state is not None and state.last_fix is not None else None
