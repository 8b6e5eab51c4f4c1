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
record per driver per batch instead of one per ping. Records are produced with librdkafka
(``DeliveringProducer``).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

import faust

from base import metrics
from base.exceptions import SchemaError
from base.logs import record_context
from schemas.codecs import codec
from streams.app import app, gps_pings_clean_topic, gps_pings_raw_topic, gps_pings_rejected_topic, settings
from streams.outputs import RecordSender
from streams.pings import fastdrain, rules
from streams.pings.state import DriverPingState
from streams.pings.store import DriverStateTable
from streams.unpacked import UnpackedStates

logger = logging.getLogger(__name__)
fastdrain.install()

BATCH_SIZE = 5_000
BATCH_WITHIN_S = 0.1

RULES = rules.RuleConfig.from_settings(settings)

driver_ping_state = DriverStateTable(
    app,
    name="driver_ping_state",
    beacon=app.tables.beacon,
    # bytes keys and values are stored and logged raw; the state is already compactly packed.
    key_type=bytes,
    value_type=bytes,
    partitions=settings.partitions,
    default=None,
    # The agent writes the changelog itself (see persist_states); should anything set items directly,
    # the partition must still come from the key, as a batch mixes partitions.
    use_partitioner=True,
)
app.tables.add(driver_ping_state)

_gps_ping = codec("GpsPing")
_clean_ping = codec("CleanPing")
_rejected_ping = codec("RejectedPing")
CLEAN_TOPIC = gps_pings_clean_topic.get_topic_name()
REJECTED_TOPIC = gps_pings_rejected_topic.get_topic_name()


def judge_batch(
    events: Sequence[Any], load_state: Any, states: dict[str, DriverPingState]
) -> list[tuple[str, str | None, dict[str, Any]]]:
    """Judge every new event of a batch in arrival order; return (outcome, key, record) per judged event.

    ``load_state(key_bytes)`` gives a driver's state; the updated states are left in ``states``.
    Events a driver's state has already applied (replays after a crash) are skipped.
    """
    results: list[tuple[str, str | None, dict[str, Any]]] = []
    for event in events:
        raw_key, raw, message = event.key, event.value, event.message
        try:
            key = raw_key.decode() if isinstance(raw_key, bytes) else raw_key
        except UnicodeDecodeError:
            key = None
        source = (message.topic, message.partition, message.offset)
        stamp = int(message.timestamp * 1000)
        state = None
        if key is not None:
            state = states.get(key)
            if state is None:
                state = states[key] = load_state(key.encode())
            if message.offset <= state.last_offset:
                continue
            state.last_offset = message.offset
        try:
            if not isinstance(raw, bytes):
                raise SchemaError("record has no value")
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


# At fleet size nearly every ping of a batch is another driver's: unpacking its state each time was a
# seventh of the worker's CPU (streams/unpacked.py).
unpacked_states = UnpackedStates(lambda key: driver_ping_state.data.get(key), DriverPingState.unpack)
load_state = unpacked_states.load


# Records sent and waited for (its own producer: see streams/outputs.py).
deliver_records = RecordSender(settings).deliver


async def persist_states(states: dict[str, DriverPingState]) -> None:
    """Write the batch's driver states to the changelog, wait for the broker, then to the table's store.

    The records are delivered by the agent itself rather than through ``table[key] = value``: that hands
    them to Faust's send buffer, and Faust's pre-commit flush gives up on the buffer after 0.1 s, so offsets
    could be committed before the state is durable. The store is written only once the changelog holds
    the states, so it never knows more than a restarted or rebalanced worker would. The changelog is keyed
    like the source topic and partitioned by the same murmur2 hash, so each state lands on its driver's
    partition.
    """
    changelog = driver_ping_state.changelog_topic.get_topic_name()
    records = [(changelog, key.encode(), state.pack()) for key, state in states.items()]
    await deliver_records(records)
    store = driver_ping_state.data
    for (_, key_bytes, packed), state in zip(records, states.values(), strict=True):
        store[key_bytes] = packed
        unpacked_states.keep(key_bytes, packed, state)


def log_rejections(results: list[tuple[str, str | None, dict[str, Any]]]) -> None:
    """Log each rejection with its source record; only undecodable records are worth a warning."""
    for outcome, _, record in results:
        if outcome != "rejected":
            continue
        level = logging.WARNING if record["reason"] == rules.Reason.MALFORMED else logging.DEBUG
        if logger.isEnabledFor(level):
            context = record_context(
                stage="clean",
                topic=record["source_topic"],
                partition=record["source_partition"],
                offset=record["source_offset"],
                reason=record["reason"],
            )
            logger.log(level, "ping rejected: %s", record["detail"], extra=context)


def encode_results(results: list[tuple[str, str | None, dict[str, Any]]]) -> tuple[list[Any], Counter[Any]]:
    """Avro-encode the verdicts for their topics and count them by outcome."""
    outputs = []
    outcomes: Counter[tuple[str, str]] = Counter()
    for outcome, key, record in results:
        key_bytes = key.encode() if key is not None else b""
        if outcome == "clean":
            outputs.append((CLEAN_TOPIC, key_bytes, _clean_ping.encode(record)))
            outcomes[("clean", "true" if record["late"] else "false")] += 1
        else:
            outputs.append((REJECTED_TOPIC, key_bytes, encode_rejected(record)))
            outcomes[("rejected", record["reason"])] += 1
    return outputs, outcomes


def encode_rejected(record: dict[str, Any]) -> bytes:
    """Encode a dead letter. A ping that decoded but does not fit its own schema again (a corrupted varint
    reads as an int out of range) is left out, the source topic, partition and offset still pointing at it:
    the dead letter must never be what stops the stream."""
    try:
        return _rejected_ping.encode(record)
    except SchemaError as exc:
        detail = f"{record['detail']}; the ping is left out, it does not fit its schema: {str(exc)[:200]}"
        return _rejected_ping.encode({**record, "ping": None, "detail": detail})


@app.agent(gps_pings_raw_topic, concurrency=1)
async def clean_pings(stream: faust.StreamT[bytes]) -> None:
    """Validate, deduplicate and H3-snap every raw ping; dead-letter the rest with their reason.

    Per batch: judge, deliver the verdicts, persist the states; the batch's events are acked (and their
    offsets later committed) only after that.
    """
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
        states: dict[str, DriverPingState] = {}
        try:
            results = judge_batch(events, load_state, states)
            outputs, outcomes = encode_results(results)
            await deliver_records(outputs)
            await persist_states(states)
        except BaseException:
            unpacked_states.clear()  # objects changed in place but not persisted must not be reused
            raise
        log_rejections(results)
        now = time.time()
        metrics.observe_processing_latency("clean", now, (event.message.timestamp for event in events))
        metrics.observe_event_latency(
            "clean", now, (record["device_ts"] for outcome, _, record in results if outcome == "clean")
        )
        metrics.PINGS_RECEIVED.labels("clean").inc(len(events))
        for (outcome, label), count in outcomes.items():
            if outcome == "clean":
                metrics.PINGS_ACCEPTED.labels(label).inc(count)
            else:
                metrics.PINGS_REJECTED.labels("clean", label).inc(count)
