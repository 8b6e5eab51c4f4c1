"""The ping-cleaning agent: decode raw pings, judge them against each driver's state, route the result.

Crash safety under at-least-once delivery, per batch:
1. every verdict is derived only from the source record and the driver's state (``processed_ts`` is the
   source record's timestamp, not the wall clock), so reprocessing the same record from the same state
   emits byte-identical records;
2. outputs are sent and acknowledged by the broker before the new driver states are written, and the
   states' changelog records are acknowledged before the batch is acked (so before its offsets can be
   committed);
3. each state remembers the source offset it has applied.
So after a kill -9, a record whose state update survived is skipped (its outputs were already durable), and
a record whose state update was lost is judged again from the older state, giving exact replays on
``gps.pings.clean`` that the ClickHouse sink drops by ``ping_id``. No ping is lost or judged twice
differently.

Work is taken in batches: each driver's state is read and written once per batch, so the changelog gets one
record per driver per batch instead of one per ping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import faust

from schemas.codecs import codec
from streams import metrics
from streams.app import app, gps_pings_clean_topic, gps_pings_raw_topic, gps_pings_rejected_topic, settings
from streams.exceptions import SchemaError
from streams.pings import rules
from streams.pings.state import DriverPingState

BATCH_SIZE = 2000
BATCH_WITHIN_S = 0.05

RULES = rules.RuleConfig(
    max_accuracy_m=settings.ping_max_accuracy_m,
    max_future_ms=int(settings.ping_max_future_s * 1000),
    horizon_ms=int(settings.ping_horizon_hours * 3_600_000),
    max_speed_mps=settings.ping_max_speed_mps,
)

driver_ping_state = app.Table(
    "driver_ping_state",
    # bytes keys and values are stored and logged raw; the state is already compactly packed.
    key_type=bytes,
    value_type=bytes,
    partitions=settings.partitions,
    default=None,
    # A batch mixes partitions, so the changelog partition must come from the key (murmur2, the same
    # partitioner as the source topic), not from whichever event Faust thinks is current.
    use_partitioner=True,
)

_gps_ping = codec("GpsPing")


def judge_batch(
    events: Sequence[Any], load_state: Any, states: dict[str, DriverPingState]
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Judge every new event of a batch in arrival order; return (outcome, key, record) per judged event.

    ``load_state(key_bytes)`` gives a driver's stored state bytes; the updated states are left in ``states``.
    Events a driver's state has already applied (replays after a crash) are skipped.
    """
    results: list[tuple[str, str | None, dict[str, Any]]] = []
    for event in events:
        key, raw, message = event.key, event.value, event.message
        source = (message.topic, message.partition, message.offset)
        stamp = int(message.timestamp * 1000)
        state = None
        if key is not None:
            state = states.get(key)
            if state is None:
                state = states[key] = DriverPingState.unpack(load_state(key.encode()))
            if message.offset <= state.last_offset:
                continue
            state.last_offset = message.offset
        try:
            ping = _gps_ping.decode(raw)
        except SchemaError as exc:
            rejection = rules.Rejection(rules.Reason.MALFORMED, str(exc))
            results.append(("rejected", key, rules.rejected_ping(rejection, None, raw, source, stamp)))
            continue
        if state is None or ping["driver_id"] != key:
            rejection = rules.Rejection(rules.Reason.MALFORMED, "record key is not the ping's driver_id")
            results.append(("rejected", key, rules.rejected_ping(rejection, ping, raw, source, stamp)))
            continue
        verdict = rules.evaluate(ping, state, RULES, processed_ts=max(stamp, ping["received_ts"]))
        if isinstance(verdict, rules.Rejection):
            results.append(("rejected", key, rules.rejected_ping(verdict, ping, raw, source, stamp)))
        else:
            results.append(("clean", key, verdict))
    return results


async def persist_states(states: dict[str, DriverPingState]) -> None:
    """Store the batch's driver states and wait until their changelog records are acknowledged.

    ``table[key] = value`` hands the changelog record to Faust's send buffer, and Faust's pre-commit flush
    gives up on that buffer after 0.1 s, so offsets could be committed before the state is durable. Sending
    the changelog records ourselves and awaiting them closes that gap: the batch's offsets are acked (and
    later committed) only after this returns.
    """
    store = driver_ping_state.data
    changelog = driver_ping_state.changelog_topic
    deliveries = []
    for key, state in states.items():
        key_bytes, packed = key.encode(), state.pack()
        store[key_bytes] = packed
        deliveries.append(await changelog.send(key=key_bytes, value=packed))
    await asyncio.gather(*deliveries)


@app.agent(gps_pings_raw_topic, concurrency=1)
async def clean_pings(stream: faust.StreamT[bytes]) -> None:
    """Validate, deduplicate and H3-snap every raw ping; dead-letter the rest with their reason."""
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
        states: dict[str, DriverPingState] = {}
        results = judge_batch(events, driver_ping_state.get, states)
        deliveries = []
        for outcome, key, record in results:
            if outcome == "clean":
                metrics.PINGS_ACCEPTED.labels("true" if record["late"] else "false").inc()
                deliveries.append(await gps_pings_clean_topic.send(key=key, value=record))
            else:
                metrics.PINGS_REJECTED.labels("clean", record["reason"]).inc()
                deliveries.append(await gps_pings_rejected_topic.send(key=key, value=record))
        await asyncio.gather(*deliveries)
        await persist_states(states)
        metrics.PINGS_RECEIVED.labels("clean").inc(len(events))
