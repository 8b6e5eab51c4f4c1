"""Erase a person's live state on request (written by ``whatsup erase``): as a driver, or as a customer.

A driver (``privacy.erasures``): the topic is keyed by driver id and co-partitioned with the driver's inputs,
so the worker holding the driver's state gets the request. Under the state lock (the agent and the timer are
not mid-change), it writes a tombstone to the driver_state changelog and waits for the broker, then drops the
state from the store, the cached state objects and the delivery index: a restarted or new worker recovers no
state for the driver.

A customer (``privacy.erasures.customers``): their deliveries may lie with any driver, so the request comes
as one copy on every partition (co-partitioned too), and the worker owning a partition scrubs that
partition's drivers: each of the customer's deliveries stays, without the customer's reference, name and
drop-off address. First it waits until ``track_drivers`` has applied every delivery event the partition held
when the copy was read: an assignment still queued (a restart, a backlog) would otherwise bring the name back
after the scrub. The wait is short and never lasts through a rebalance; a copy whose events are not applied
by then goes again to the end of its partition, for whichever worker owns it then. The scrubbed states go to
the changelog, then to the store, like every state the agent writes: the dispatcher API, the tracking links
it answers, the console and a restarted worker all see them without the customer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
import orjson

from base import topics
from base.exceptions import SchemaError
from schemas.codecs import codec
from streams.app import app, settings
from streams.deliveries import metrics
from streams.deliveries.agents import (
    EVENTS_TOPIC,
    deliver_records,
    driver_state,
    index_deliveries,
    load_state,
    partition_of,
    persist_states,
    processed,
    state_lock,
    unpacked_states,
)
from streams.deliveries.state import DriverState, forget_customers

log = logging.getLogger(__name__)

WAIT_STEP_S = 0.2
# How long a copy waits for its partition's delivery events before it goes to the end of the partition.
PATIENCE_S = 5.0
# A request older than this is applied without waiting: a partition whose events never catch up must not
# keep a customer forever.
MAX_WAIT_MS = 3_600_000


def _raw_topic(name: str) -> faust.TopicT:
    return app.topic(
        topics.qualified(name, settings.topic_prefix),
        key_type=bytes,
        key_serializer="raw",
        value_type=bytes,
        value_serializer="raw",
        partitions=settings.partitions,
    )


erasures_topic = _raw_topic(topics.PRIVACY_ERASURES)
customer_erasures_topic = _raw_topic(topics.PRIVACY_ERASURES_CUSTOMERS)
_erasure = codec("Erasure")


async def forget_driver(driver_id: str) -> bool:
    """Tombstone a driver's state on the changelog and drop it here; True if there was one."""
    key = driver_id.encode()
    async with state_lock:
        had_state = driver_state.data.get(key) is not None
        changelog = driver_state.changelog_topic.get_topic_name()
        await deliver_records([(changelog, key, None)])  # type: ignore[list-item]
        driver_state.data.pop(key, None)
        unpacked_states.clear()
        index_deliveries(key, None)
    return had_state


@app.agent(erasures_topic, concurrency=1)
async def erase_driver_states(stream: faust.StreamT[bytes]) -> None:
    """Drop the live state of each driver an erasure request names."""
    async for value in stream:
        try:
            request = _erasure.decode(value)
        except SchemaError as exc:
            log.error("privacy.erasures: undecodable request skipped (reason malformed): %s", exc)
            metrics.ERASURES.labels("malformed").inc()
            continue
        driver_id = request["driver_id"]
        erased = bool(driver_id) and await forget_driver(driver_id)
        metrics.ERASURES.labels("erased" if erased else "no_state").inc()
        log.info("erasure %s: driver state %s", request["erasure_id"], "erased" if erased else "none here")


def events_applied(consumer: Any, tp: faust.types.TP) -> int:
    """Return the offset after the last delivery event of ``tp`` that track_drivers has applied."""
    # Faust keeps the offsets it committed (and resumed from) as Kafka does: the next one to read.
    committed = getattr(consumer, "_committed_offset", {}).get(tp)
    return max(processed.get((tp.topic, tp.partition), -1) + 1, committed or 0)


async def wait_for_events(partition: int, consumer: Any = None, patience_s: float | None = None) -> bool:
    """Wait until track_drivers has applied the delivery events ``partition`` held when called.

    False when the partition leaves this worker, a rebalance starts or ``patience_s`` passes first: the
    caller then hands its copy on. It must not keep its message through a rebalance: Faust stops every
    stream and waits for the messages in hand to be acknowledged before the rebalance goes on, so the
    events waited for would never come.
    """
    consumer = app.consumer if consumer is None else consumer
    tp = faust.types.TP(EVENTS_TOPIC, partition)
    give_up = time.monotonic() + (PATIENCE_S if patience_s is None else patience_s)
    end = None
    while tp in consumer.assignment() and not app.rebalancing and time.monotonic() < give_up:
        if end is None:
            try:
                end = consumer.highwater(tp)
            except Exception:  # not fetched yet, or the consumer is between generations: ask again
                end = None
        if end is not None and events_applied(consumer, tp) >= end:
            return True
        await asyncio.sleep(WAIT_STEP_S)
    return False


async def forget_customers_on(partition: int, customer_refs: list[str]) -> int:
    """Scrub customers from the deliveries of this worker's drivers on ``partition``; return how many."""
    refs = frozenset(customer_refs)
    # Only states whose bytes hold a reference are unpacked: the lock stops track_drivers meanwhile.
    needles = [orjson.dumps(ref) for ref in refs]
    states: dict[str, DriverState] = {}
    scrubbed = 0
    async with state_lock:
        try:
            for key, packed in list(driver_state.data.items()):
                if not packed or partition_of(key) != partition or not any(n in packed for n in needles):
                    continue
                state = load_state(key)
                changed = forget_customers(state, refs)
                if changed:
                    states[key.decode()] = state
                    scrubbed += len(changed)
            await persist_states(states)
        except BaseException:
            unpacked_states.clear()  # objects changed in place but not persisted must not be reused
            raise
    return scrubbed


async def hand_on(key: bytes | None, value: bytes, partition: int) -> None:
    """Send a copy again to the end of its partition and wait for the broker to have it."""
    sent = await customer_erasures_topic.send(key=key, value=value, partition=partition)
    await sent


@app.agent(customer_erasures_topic, concurrency=1)
async def erase_customers(stream: faust.StreamT[bytes]) -> None:
    """Scrub each erased customer from the deliveries of the drivers on the partition its copy came on."""
    async for event in stream.events():
        try:
            request = _erasure.decode(event.value)
        except SchemaError as exc:
            log.error("privacy.erasures.customers: undecodable request skipped (reason malformed): %s", exc)
            metrics.CUSTOMER_ERASURES.labels("malformed").inc()
            continue
        partition = event.message.partition
        overdue = time.time() * 1000 - request["requested_at"] > MAX_WAIT_MS
        if not overdue and not await wait_for_events(partition):
            # At the end of the partition, for whichever worker owns it once its events are applied.
            await asyncio.sleep(WAIT_STEP_S)
            await hand_on(event.key, event.value, partition)
            metrics.CUSTOMER_ERASURES.labels("handed_on").inc()
            continue
        scrubbed = await forget_customers_on(partition, request["customer_refs"])
        outcome = "overdue" if overdue else "scrubbed" if scrubbed else "no_state"
        metrics.CUSTOMER_ERASURES.labels(outcome).inc()
        late = " (its partition's delivery events not applied yet: scrubbed without them)" if overdue else ""
        log.log(
            logging.WARNING if overdue else logging.INFO,
            "erasure %s: %d deliveries on partition %d kept without the customer%s",
            request["erasure_id"],
            scrubbed,
            partition,
            late,
        )
