"""track_drivers and the silent-driver timer inside Faust, without a broker."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from faust.types import TP
from h3.api import basic_int as h3

from schemas.codecs import codec
from streams.app import alerts_topic, deliveries_eta_topic, deliveries_rejected_topic
from streams.deliveries import agents, speeds
from streams.deliveries.agents import CLEAN_TOPIC, EVENTS_TOPIC, track_drivers
from streams.deliveries.cell_speeds import RIDE_KEY, CellSpeed, cell_key, hour_of_week
from tests.agents.conftest import SentRecords

T0 = 1_790_000_010_000
MIN = 60_000
DRIVER = "drv-7"


def delivery_event(event_id: str, kind: str, delivery_id: str = "dlv-1", **extra: Any) -> bytes:
    record = {
        "event_id": event_id,
        "delivery_id": delivery_id,
        "driver_id": DRIVER,
        "type": kind,
        "ts": T0,
        "pickup_lat": -23.40 if kind == "assigned" else None,
        "pickup_lon": -46.50 if kind == "assigned" else None,
        "dropoff_lat": -23.70 if kind == "assigned" else None,
        "dropoff_lon": -46.80 if kind == "assigned" else None,
        "promised_at": T0 + 30 * MIN,
        "principal": "key:partner",
        **extra,
    }
    return codec("DeliveryEvent").encode(record)


def clean_ping(n: int, ts: int, lat: float, lon: float = -46.63, step_m: float = 0.0, **extra: Any) -> bytes:
    return codec("CleanPing").encode(
        {
            "ping_id": f"p{n}",
            "driver_id": DRIVER,
            "device_ts": ts,
            "lat": lat,
            "lon": lon,
            "accuracy_m": 5.0,
            "speed_mps": None,
            "received_ts": ts + 200,
            "h3_r9": 617_700_169_958_293_503,
            "h3_r7": 608_692_970_707_697_663,
            "step_m": step_m,
            "processed_ts": ts + 300,
            **extra,
        }
    )


class Feed:
    """Put records on the agent's channel as if read from a given topic, offsets counted per topic."""

    def __init__(self, agent: Any) -> None:
        self.agent = agent
        self.offsets = {CLEAN_TOPIC: 0, EVENTS_TOPIC: 0}

    async def put(
        self, topic: str, value: bytes, ts_ms: int, *, key: bytes = DRIVER.encode(), offset: int = -1
    ) -> None:
        if offset < 0:
            offset = self.offsets[topic]
            self.offsets[topic] += 1
        message = self.agent.to_message(key, value, partition=0, offset=offset, timestamp=ts_ms / 1000)
        message.topic, message.tp = topic, TP(topic, 0)  # as if read from that topic of the two
        channel = self.agent.stream().channel
        await channel.put(await channel.decode(message))


async def settle(condition: Any) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.02)


def alerts(sent: SentRecords) -> list[dict[str, Any]]:
    return sent.values(alerts_topic)


def test_a_stall_on_a_delivery_in_transit_is_one_alert_and_the_state_says_stalled(
    captured: SentRecords,
) -> None:
    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e2", "picked_up"), T0)
            for i, ts in enumerate(range(T0, T0 + 9 * MIN, 5_000)):
                await feed.put(CLEAN_TOPIC, clean_ping(i, ts, -23.55), ts + 500)
            await settle(lambda: alerts(captured))
            await asyncio.sleep(0.2)

    asyncio.run(run())
    # 24 km from the drop-off and not moving: the promise (T0 + 30 min) is at risk too, once.
    assert sorted(a["kind"] for a in alerts(captured)) == ["late_risk", "stall"]
    [stall] = [a for a in alerts(captured) if a["kind"] == "stall"]
    assert stall["delivery_id"] == "dlv-1" and stall["started_at"] == T0
    assert set(captured.keys(alerts_topic)) == {DRIVER.encode()}
    state = agents.lookup(DRIVER)
    assert state is not None and state.status() == "stalled"
    assert state.last_fix is not None and state.last_fix.ts == T0 + 9 * MIN - 5_000
    found = agents.find_delivery("dlv-1")
    assert found is not None and found[0] == DRIVER and found[1].owner == "key:partner"
    assert captured.changelog(), "the state must reach the changelog"


def test_events_that_cannot_apply_are_dead_lettered_with_their_reason(captured: SentRecords) -> None:
    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "picked_up"), T0)  # duplicate id
            await feed.put(EVENTS_TOPIC, delivery_event("e2", "delivered", "dlv-x"), T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e3", "en_route"), T0)  # before pickup
            await feed.put(EVENTS_TOPIC, b"\xc3\x01 not avro", T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e4", "picked_up"), T0, key=b"someone-else")
            await feed.put(EVENTS_TOPIC, delivery_event("e5", "picked_up"), T0)
            await settle(lambda: len(captured.values(deliveries_rejected_topic)) >= 5)
            await asyncio.sleep(0.2)

    asyncio.run(run())
    rejected = captured.values(deliveries_rejected_topic)
    assert [(r["reason"], r["event_id"]) for r in rejected] == [
        ("duplicate_event", "e1"),
        ("unknown_delivery", "e2"),
        ("impossible_transition", "e3"),
        ("malformed", None),
        ("wrong_key", "e4"),
    ]
    assert rejected[3]["raw_payload"] == b"\xc3\x01 not avro" and rejected[3]["source_offset"] == 4
    state = agents.lookup(DRIVER)
    assert state is not None and state.deliveries["dlv-1"].status == "picked_up"


def test_a_replayed_offset_is_skipped_so_outputs_are_not_repeated(captured: SentRecords) -> None:
    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0)  # new offset: a duplicate
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0, offset=1)  # redelivery
            await settle(lambda: captured.values(deliveries_rejected_topic))
            await asyncio.sleep(0.3)

    asyncio.run(run())
    assert [r["reason"] for r in captured.values(deliveries_rejected_topic)] == ["duplicate_event"]


def test_the_timer_pages_a_silent_driver_once_and_skips_partitions_not_caught_up(
    captured: SentRecords,
) -> None:
    async def run() -> list[list[dict[str, Any]]]:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned"), T0)
            await feed.put(EVENTS_TOPIC, delivery_event("e2", "picked_up"), T0)
            # A whole window standing still, then silence: no later fix closes that window, the timer does.
            for i, ts in enumerate(range(T0, T0 + 5 * MIN, 5_000)):
                await feed.put(CLEAN_TOPIC, clean_ping(i, ts, -23.55), ts + 500)
            await settle(lambda: agents.lookup(DRIVER) and agents.lookup(DRIVER).last_fix)  # type: ignore[union-attr]
            await asyncio.sleep(0.2)
            behind = await agents.tick(T0 + 10 * MIN, lambda partition: False)
            ticks = [
                await agents.tick(now, lambda partition: True)
                for now in range(T0 + 2 * MIN, T0 + 12 * MIN, 5_000)
            ]
            return [behind, *ticks]

    behind, *ticks = asyncio.run(run())
    assert behind == []
    raised = [a for batch in ticks for a in batch]
    assert [a["kind"] for a in raised] == ["stall", "offline"]
    timer_alerts = [a for a in alerts(captured) if a["kind"] != "late_risk"]  # the late one came from a ping
    assert [a["alert_id"] for a in timer_alerts] == [a["alert_id"] for a in raised]
    state = agents.lookup(DRIVER)
    assert (
        state is not None
        and state.status() == "offline"
        and set(state.alerts) == {"offline", "stall", "late_risk:dlv-1"}
    )


async def pick_up_and_ride(feed: Feed, ride_ms: int, step_m: float) -> None:
    """Assign and pick up dlv-1 with a generous promise, then ride south, one fix per 5 s."""
    generous = T0 + 600 * MIN
    await feed.put(EVENTS_TOPIC, delivery_event("e1", "assigned", promised_at=generous), T0)
    await feed.put(EVENTS_TOPIC, delivery_event("e2", "picked_up", promised_at=generous), T0)
    lat = -23.55
    for i, ts in enumerate(range(T0, T0 + ride_ms, 5_000)):
        lat -= step_m / 111_195
        await feed.put(CLEAN_TOPIC, clean_ping(i, ts, lat, step_m=step_m), ts + 500)


def test_etas_are_published_on_change_and_the_arrival_is_recorded(captured: SentRecords) -> None:
    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await pick_up_and_ride(feed, 10 * MIN, 50.0)  # 10 m/s towards the drop-off
            await feed.put(EVENTS_TOPIC, delivery_event("e3", "delivered", ts=T0 + 40 * MIN), T0 + 40 * MIN)
            await settle(lambda: any(e["method"] == "actual" for e in captured.values(deliveries_eta_topic)))
            await asyncio.sleep(0.2)

    asyncio.run(run())
    etas = captured.values(deliveries_eta_topic)
    *estimates, actual = etas
    assert 2 <= len(estimates) < 120 / 2, "published on change or age, not on every fix"
    assert estimates[0]["computed_at"] == T0 and all(e["delivery_id"] == "dlv-1" for e in etas)
    assert all(b["computed_at"] > a["computed_at"] for a, b in itertools.pairwise(estimates))
    assert actual["method"] == "actual" and actual["eta"] == T0 + 40 * MIN
    assert [a["kind"] for a in alerts(captured)] == [], "a generous promise is not at risk"


def test_deliveries_are_found_after_a_rebalance_changed_the_store_behind_the_agent(
    captured: SentRecords,
) -> None:
    store = agents.driver_state.data

    async def assign(pairs: list[tuple[str, str]]) -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            for n, (driver, delivery) in enumerate(pairs):
                record = delivery_event(f"e-{driver}-{n}", "assigned", delivery, driver_id=driver)
                await feed.put(EVENTS_TOPIC, record, T0, key=driver.encode())
            await settle(lambda: all(driver.encode() in store for driver, _ in pairs))

    # What another worker wrote to the changelog: drv-7 with two deliveries, drv-9 with one.
    asyncio.run(assign([("drv-7", "dlv-1"), ("drv-7", "dlv-4"), ("drv-9", "dlv-3")]))
    elsewhere = {key: store[key] for key in (b"drv-7", b"drv-9")}
    store.clear()
    agents.delivery_index.clear()
    agents._indexed.clear()

    # This worker saw drv-7 with dlv-1 only, and drv-8; then a rebalance took drv-8 away, and recovery
    # brought drv-7's newer state and drv-9, whose events this worker never read.
    asyncio.run(assign([("drv-7", "dlv-1"), ("drv-8", "dlv-2")]))
    found = agents.find_delivery("dlv-2")
    assert found is not None and found[0] == "drv-8"
    del store[b"drv-8"]
    store.update(elsewhere)

    for delivery, driver in [("dlv-1", "drv-7"), ("dlv-4", "drv-7"), ("dlv-3", "drv-9")]:
        found = agents.find_delivery(delivery)
        assert found is not None and found[0] == driver and found[1].delivery_id == delivery
    assert agents.find_delivery("dlv-2") is None, "a driver no longer held here must not answer"
    assert "dlv-2" not in agents.delivery_index, "the index forgets what the store no longer holds"


def test_an_arrival_teaches_the_fleet_how_long_riding_took_against_the_etas(
    captured: SentRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Every cell on the way has a learned speed, so the ETAs are ridden cell by cell and kept for the
    # calibration; the arrival comes when the first ETA said.
    learned = speeds.CellSpeedReplica()
    monkeypatch.setattr(speeds, "replica", learned)
    south = [(-23.55 - i * 0.01, -46.63 - i * 0.0113) for i in range(20)]
    for lat, lon in south:
        cell = h3.latlng_to_cell(lat, lon, 7)
        learned.put(cell_key(cell, hour_of_week(T0)).encode(), CellSpeed(8.0, 50.0, T0))

    async def run() -> None:
        async with track_drivers.test_context() as agent:
            feed = Feed(agent)
            await pick_up_and_ride(feed, 6 * MIN, 40.0)  # past the ETA refresh at 5 min: a second ETA
            await settle(lambda: captured.values(deliveries_eta_topic))
            first = captured.values(deliveries_eta_topic)[0]
            arrived = delivery_event("e3", "arrived", ts=first["eta"])
            await feed.put(EVENTS_TOPIC, arrived, first["eta"])
            await settle(lambda: captured.keys(speeds.cell_speed_samples_topic))
            await asyncio.sleep(0.2)

    asyncio.run(run())
    etas = captured.values(deliveries_eta_topic)
    assert {e["method"] for e in etas[:-1]} == {"cell"} and etas[-1]["method"] == "actual"
    taught = list(
        zip(
            captured.keys(speeds.cell_speed_samples_topic),
            captured.values(speeds.cell_speed_samples_topic),
            strict=True,
        )
    )
    # The whole fleet's ratio, then one per ETA published for the class of the drop-off's direction it was
    # made in (the last record is the actual arrival).
    keys = [key.decode() for key, _ in taught]
    assert keys[0] == RIDE_KEY and len(keys) == 1 + len(etas) - 1 > 2
    assert all(key.startswith(f"{RIDE_KEY}:to:") for key in keys[1:])
    for _, raw in taught:
        sample = CellSpeed.unpack(raw)
        assert sample.weight == 1.0 and sample.last_ts == etas[0]["eta"]
        assert 0.5 <= sample.speed_mps <= 1.6
