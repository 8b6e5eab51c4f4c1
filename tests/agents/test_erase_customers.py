"""erase_customers inside Faust, without a broker: each copy of a customer erasure scrubs the customer from
the deliveries of its own partition's drivers, through the changelog, and keeps the deliveries."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import pytest
from faust.types import TP
from prometheus_client import REGISTRY

from schemas.codecs import codec
from streams.app import app
from streams.deliveries import agents, erasure
from streams.deliveries.agents import EVENTS_TOPIC, partition_of, persist_states
from streams.deliveries.erasure import erase_customers, events_applied, wait_for_events
from streams.deliveries.state import Delivery, DriverState, apply_event
from tests.agents.conftest import SentRecords

Settled = tuple[dict[int, bool], list[tuple[bytes | None, bytes, int]]]

T0 = 1_790_000_010_000
# Two drivers on different partitions: a copy answers for the drivers of its own partition only.
NEAR, FAR = next(
    (a, b)
    for a, b in itertools.combinations((f"drv-{n}" for n in range(100)), 2)
    if partition_of(a.encode()) != partition_of(b.encode())
)


def assigned(driver: str, delivery_id: str, customer_ref: str) -> dict[str, Any]:
    return {
        "event_id": f"{delivery_id}-a", "delivery_id": delivery_id, "driver_id": driver, "type": "assigned",
        "ts": T0, "pickup_lat": -23.55, "pickup_lon": -46.63, "dropoff_lat": -23.58, "dropoff_lon": -46.66,
        "customer_ref": customer_ref, "customer_name": "Ana Maria Souza",
        "pickup_address": "Loja 1, Rua A 10", "dropoff_address": "Av. B 200, ap 52",
    }  # fmt: skip


async def hold(*deliveries: tuple[str, str, str]) -> None:
    """Give drivers (driver, delivery, customer) deliveries, stored the way track_drivers stores them."""
    states: dict[str, DriverState] = {}
    for driver, delivery_id, ref in deliveries:
        state = states.setdefault(driver, DriverState())
        assert isinstance(apply_event(state, assigned(driver, delivery_id, ref)), Delivery)
    await persist_states(states)


def request(*refs: str, erasure_id: str = "er-1", age_s: float = 1.0) -> bytes:
    return codec("Erasure").encode(
        {
            "erasure_id": erasure_id,
            "subject_hash": "s" * 32,
            "customer_refs": list(refs),
            "requested_at": int((time.time() - age_s) * 1000),
            "requested_by": "dpo",
        }
    )


def outcomes() -> dict[str, float]:
    names = ("scrubbed", "no_state", "handed_on", "overdue", "malformed")
    read = REGISTRY.get_sample_value
    return {n: read("whatsup_deliveries_customer_erasures_total", {"outcome": n}) or 0.0 for n in names}


def customer_of(delivery_id: str) -> tuple[str | None, str | None, str | None]:
    found = agents.find_delivery(delivery_id)
    assert found is not None, f"delivery {delivery_id} must stay"
    delivery = found[1]
    return delivery.customer_ref, delivery.customer_name, delivery.dropoff_address


@pytest.fixture()
def settled(monkeypatch: pytest.MonkeyPatch) -> Settled:
    """Whether each partition's delivery events are applied in time (default yes), and the copies handed
    on to the end of their partition."""
    owned: dict[int, bool] = {}
    handed: list[tuple[bytes | None, bytes, int]] = []

    async def wait(partition: int, consumer: Any = None) -> bool:
        return owned.get(partition, True)

    async def hand_on(key: bytes | None, value: bytes, partition: int) -> None:
        handed.append((key, value, partition))

    monkeypatch.setattr(erasure, "wait_for_events", wait)
    monkeypatch.setattr(erasure, "hand_on", hand_on)
    monkeypatch.setattr(erasure, "WAIT_STEP_S", 0.01)
    return owned, handed


def test_each_copy_scrubs_its_partitions_drivers_through_the_changelog_and_keeps_the_deliveries(
    captured: SentRecords, settled: Settled
) -> None:
    async def run() -> None:
        await hold((NEAR, "d-1", "cust-9"), (NEAR, "d-2", "cust-kept"), (FAR, "d-3", "cust-9"))
        captured.by_topic.clear()
        async with erase_customers.test_context() as agent:
            await agent.put(request("cust-9"), key=b"s", partition=partition_of(NEAR.encode()))
            assert customer_of("d-1") == (None, None, None)
            assert customer_of("d-3") == ("cust-9", "Ana Maria Souza", "Av. B 200, ap 52")  # not its copy
            await agent.put(request("cust-9"), key=b"s", partition=partition_of(FAR.encode()))

    before = outcomes()["scrubbed"]
    asyncio.run(run())
    assert outcomes()["scrubbed"] == before + 2
    for delivery_id in ("d-1", "d-3"):
        assert customer_of(delivery_id) == (None, None, None)
    assert customer_of("d-2") == ("cust-kept", "Ana Maria Souza", "Av. B 200, ap 52")
    near = agents.lookup(NEAR)
    assert near is not None and near.deliveries["d-1"].pickup_address == "Loja 1, Rua A 10"
    # What a restarted worker, and the console, read: the scrubbed states, one per driver.
    changelog = captured.changelog()
    assert sorted(key for key, _ in changelog) == sorted([NEAR.encode(), FAR.encode()])
    for key, packed in changelog:
        assert packed == agents.driver_state.data[key]
        assert DriverState.unpack(packed).find("d-1" if key == NEAR.encode() else "d-3").customer_ref is None


def test_a_copy_that_finds_nothing_a_malformed_one_and_one_still_waiting_change_nothing(
    captured: SentRecords, settled: Settled
) -> None:
    owned, handed = settled
    before = outcomes()
    waiting = request("cust-9")

    async def run() -> None:
        await hold((NEAR, "d-1", "cust-9"))
        captured.by_topic.clear()
        owned[partition_of(NEAR.encode())] = False  # its events not applied in time (or a rebalance began)
        async with erase_customers.test_context() as agent:
            await agent.put(b"\x00not avro", key=b"s", partition=partition_of(NEAR.encode()))
            await agent.put(waiting, key=b"s", partition=partition_of(NEAR.encode()))
            await agent.put(request("cust-nobody"), key=b"s", partition=partition_of(FAR.encode()))

    asyncio.run(run())
    assert customer_of("d-1") == ("cust-9", "Ana Maria Souza", "Av. B 200, ap 52")  # not yet
    # The copy still waiting went again to the end of its own partition, unchanged, for its owner then.
    assert handed == [(b"s", waiting, partition_of(NEAR.encode()))]
    assert captured.changelog() == []
    after = outcomes()
    assert {n: after[n] - before[n] for n in after} == {
        "scrubbed": 0,
        "no_state": 1,
        "handed_on": 1,
        "overdue": 0,
        "malformed": 1,
    }


def test_a_request_an_hour_old_is_applied_without_waiting_any_longer(
    captured: SentRecords, settled: Settled
) -> None:
    owned, handed = settled
    before = outcomes()["overdue"]

    async def run() -> None:
        await hold((NEAR, "d-1", "cust-9"))
        owned[partition_of(NEAR.encode())] = False  # the partition never catches up
        async with erase_customers.test_context() as agent:
            stale = request("cust-9", age_s=erasure.MAX_WAIT_MS / 1000 + 60)
            await agent.put(stale, key=b"s", partition=partition_of(NEAR.encode()))

    asyncio.run(run())
    assert customer_of("d-1") == (None, None, None)
    assert handed == [] and outcomes()["overdue"] == before + 1


class FakeConsumer:
    """What wait_for_events reads of Faust's consumer: assignment, highwater, committed offsets."""

    def __init__(self, partition: int, highwater: int | None, committed: int | None = None) -> None:
        self.tp = TP(EVENTS_TOPIC, partition)
        self.assigned = {self.tp}
        self.end = highwater
        self._committed_offset = {self.tp: committed}

    def assignment(self) -> set[TP]:
        return self.assigned

    def highwater(self, tp: TP) -> int | None:
        return self.end


def test_the_scrub_waits_for_the_delivery_events_queued_before_it(
    captured: SentRecords, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(erasure, "WAIT_STEP_S", 0.01)

    async def run() -> None:
        consumer = FakeConsumer(3, highwater=10)
        waiting = asyncio.create_task(wait_for_events(3, consumer))
        agents.processed[(EVENTS_TOPIC, 3)] = 8  # offsets 0..8 applied, 9 still queued
        await asyncio.sleep(0.05)
        assert not waiting.done()
        consumer.end = 20  # newer events do not count: only those there when the copy was read
        agents.processed[(EVENTS_TOPIC, 3)] = 9
        assert await asyncio.wait_for(waiting, 1.0) is True

        resumed = FakeConsumer(4, highwater=5, committed=5)  # applied by the last owner, committed
        assert events_applied(resumed, resumed.tp) == 5
        assert await asyncio.wait_for(wait_for_events(4, resumed), 1.0) is True

        unknown = FakeConsumer(5, highwater=None)  # not fetched yet: wait; then the partition leaves
        waiting = asyncio.create_task(wait_for_events(5, unknown))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        unknown.assigned = set()
        assert await asyncio.wait_for(waiting, 1.0) is False

        # Never held through a rebalance: Faust waits for the message in hand before it goes on, and the
        # events would never come.
        behind = FakeConsumer(6, highwater=10)
        waiting = asyncio.create_task(wait_for_events(6, behind, patience_s=30))
        await asyncio.sleep(0.05)
        assert not waiting.done()
        monkeypatch.setattr(app, "rebalancing", True)
        assert await asyncio.wait_for(waiting, 1.0) is False
        monkeypatch.setattr(app, "rebalancing", False)
        # Nor longer than its patience.
        started = time.monotonic()
        assert await wait_for_events(6, behind, patience_s=0.1) is False
        assert time.monotonic() - started < 1.0

    asyncio.run(run())


def test_a_worker_that_lost_a_partition_answers_none_of_its_drivers_from_an_old_copy(
    captured: SentRecords,
) -> None:
    # The owner scrubs an erased customer; a copy left on the worker that held the driver before would
    # still show them through the delivery API (and the tracking links that read it).
    async def run() -> None:
        await hold((NEAR, "d-1", "cust-9"), (FAR, "d-3", "cust-9"))
        captured.by_topic.clear()
        assigned = {TP(EVENTS_TOPIC, partition_of(NEAR.encode())), TP(f"{EVENTS_TOPIC}-other", 99)}
        await agents.drop_moved_drivers(None, assigned)

    asyncio.run(run())
    assert agents.lookup(FAR) is None and agents.find_delivery("d-3") is None
    assert customer_of("d-1") == ("cust-9", "Ana Maria Souza", "Av. B 200, ap 52")
    assert captured.changelog() == []  # only forgotten here: the owner's state on the changelog stays
