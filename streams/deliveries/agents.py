"""Track every driver: one agent over clean pings and delivery events, one timer for silent drivers.

``track_drivers`` reads ``gps.pings.clean`` and ``deliveries.events`` together (co-partitioned, keyed by
driver id), so one worker holds all of a driver's live state in ``driver_state``. It is crash safe the way
``clean_pings`` is (see streams/pings/agents.py): outputs depend only on the source record (``now`` is the
record's timestamp) and the driver's state; per batch, alerts and dead letters are acknowledged by the broker
before the states reach the changelog, and the changelog before the batch is acked; each state remembers the
offset it applied per source topic, so a replay after a crash is skipped or judged again identically.

The clean pings it accepts also teach the learned cell speeds (streams/deliveries/speeds.py): each batch's
riding samples, summed per cell key, go out with the batch's other outputs to ``cell-speed-samples``, so
the worker decodes each clean ping once. A sum has no id to deduplicate: a crash after the outputs are
acknowledged but before the states reach the changelog replays the batch, at worst counting its samples
twice.

``watch_silent_drivers`` runs on the wall clock over the drivers of this worker's partitions: Faust windows
close only when a new event arrives (faust issue 250), and a silent phone sends none. It skips partitions the
agent has not caught up on, so a restarted worker working through its backlog does not page anyone for
drivers whose pings are still queued. Its alerts have deterministic ids, so the rare resend after a crash
between delivery and persistence repeats the same alert id.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import faust
from aiokafka.partitioner import murmur2

from base import metrics as stream_metrics
from base import topics
from base.apikeys import partner_keys
from base.exceptions import SchemaError, SettingsError
from schemas.codecs import codec
from streams.app import (
    alerts_topic,
    app,
    deliveries_applied_topic,
    deliveries_eta_topic,
    deliveries_rejected_topic,
    gps_pings_clean_topic,
    settings,
)
from streams.deliveries import estimates, metrics
from streams.deliveries.eta import EtaConfig
from streams.deliveries.speeds import (
    dwell_records,
    lookup_cell_speed,
    lookup_dwell,
    lookup_ride_ratio,
    ride_records,
    speed_records,
)
from streams.deliveries.stall import StallConfig, depots_from_geojson
from streams.deliveries.state import Delivery, DriverState, Reason, Rejection
from streams.deliveries.tracker import TrackerConfig, applied_record, on_event, on_ping, on_tick, ping_fault
from streams.outputs import RecordSender
from streams.unpacked import UnpackedStates

log = logging.getLogger(__name__)

BATCH_SIZE = 2_000
BATCH_WITHIN_S = 0.1


def load_depots(path: Any) -> list[Any]:
    """Read the depot polygons from the GeoJSON file setting, if any."""
    if path is None:
        return []
    try:
        return depots_from_geojson(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise SettingsError(f"WHATSUP_DEPOTS_GEOJSON={path} is not usable GeoJSON: {exc}") from None


CONFIG = TrackerConfig(
    stall=StallConfig(
        radius_m=settings.stall_radius_m,
        window_ms=int(settings.stall_minutes * 60_000),
        step_ms=int(settings.stall_step_s * 1000),
        horizon_ms=int(settings.stall_horizon_minutes * 60_000),
        close_grace_ms=int(settings.stall_grace_s * 1000),
        offline_ms=int(settings.offline_minutes * 60_000),
        geofence_m=settings.geofence_radius_m,
    ),
    depots=tuple(load_depots(settings.depots_geojson)),
    # The same bounds as a ping's: an event from a clock far ahead, or older than the horizon, moves nothing.
    max_future_ms=int(settings.ping_max_future_s * 1000),
    horizon_ms=int(settings.ping_horizon_hours * 3_600_000),
    partners=partner_keys(settings.api_keys),
    accept_timeout_ms=int(settings.accept_timeout_s * 1000),
)

ETA_CONFIG = EtaConfig.from_settings(settings)

CLEAN_TOPIC = gps_pings_clean_topic.get_topic_name()
EVENTS_TOPIC = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
ALERTS_TOPIC = alerts_topic.get_topic_name()
REJECTED_TOPIC = deliveries_rejected_topic.get_topic_name()
ETA_TOPIC = deliveries_eta_topic.get_topic_name()
APPLIED_TOPIC = deliveries_applied_topic.get_topic_name()
LEARNED = estimates.Learned(lookup_cell_speed, lookup_dwell, lookup_ride_ratio)
TAGS = {CLEAN_TOPIC: "p", EVENTS_TOPIC: "e"}

# Both inputs through one raw channel: the agent decodes, so a bad record is dead-lettered, not a crash.
driver_inputs_topic = app.topic(
    CLEAN_TOPIC,
    EVENTS_TOPIC,
    key_type=bytes,
    key_serializer="raw",
    value_type=bytes,
    value_serializer="raw",
    partitions=settings.partitions,
)

driver_state = app.Table(
    "driver_state",
    key_type=bytes,
    value_type=bytes,
    partitions=settings.partitions,
    default=None,
    use_partitioner=True,
)

_clean_ping = codec("CleanPing")
_delivery_event = codec("DeliveryEvent")
_alert = codec("Alert")
_rejected = codec("RejectedDeliveryEvent")
_eta = codec("EtaUpdate")

# The agent and the timer both rewrite driver states: one at a time, or one would overwrite the other.
state_lock = asyncio.Lock()
# Newest offset processed per (topic, partition): the timer only speaks for partitions that are caught up.
processed: dict[tuple[str, int], int] = {}
# delivery id -> driver id for the drivers of this worker, for the delivery API (see streams/web). Per
# driver, the stored bytes the index was built from and the delivery ids they added: recovery and rebalances
# change the store without the agent, so a lookup that misses re-indexes whatever changed since.
delivery_index: dict[str, str] = {}
_indexed: dict[bytes, tuple[bytes, tuple[str, ...]]] = {}


def eta_outputs(
    state: DriverState, key: str, ping: dict[str, Any], now: int
) -> list[tuple[str, bytes, bytes]]:
    """Return the EtaUpdate records, late_risk alerts and dwell samples a clean ping calls for."""
    updates, alerts, dwell = estimates.on_fix(
        state, key, ping, LEARNED, now, ETA_CONFIG, CONFIG.stall.horizon_ms
    )
    for update in updates:
        metrics.ETA_EMITTED.labels(update["method"]).inc()
    etas = [(ETA_TOPIC, key.encode(), _eta.encode(update)) for update in updates]
    return etas + encode_alerts(key, alerts, "ping") + dwell_records(dwell, int(ping["device_ts"]))


def arrival_outputs(state: DriverState, key: str, delivery: Delivery) -> list[tuple[str, bytes, bytes]]:
    """Record a delivery's actual arrival once, on its first arrived or delivered event, and teach the fleet
    how long its riding took against what its ETAs foresaw."""
    if not estimates.first_arrival(delivery):
        return []
    record, errors = estimates.on_arrival(key, delivery)
    for which, error_s in errors.items():
        metrics.ETA_ERROR.labels(which).observe(abs(error_s))
    taught = ride_records(estimates.ride_samples(state, delivery, ETA_CONFIG), delivery.updated_at)
    return taught + ([] if record is None else [(ETA_TOPIC, key.encode(), _eta.encode(record))])


def rejected_record(
    rejection: Rejection, key: str | None, event: dict[str, Any] | None, message: Any
) -> dict[str, Any]:
    """Return the dead letter of a delivery event."""
    event = event or {}
    return {
        "reason": str(rejection.reason),
        "detail": rejection.detail,
        "driver_id": key,
        "delivery_id": event.get("delivery_id"),
        "event_id": event.get("event_id"),
        "event_type": event.get("type"),
        "event_ts": event.get("ts"),
        "raw_payload": message.value if isinstance(message.value, bytes) else None,
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "rejected_ts": int(message.timestamp * 1000),
    }


def _judge_event(
    state: DriverState, key: str, raw: Any, message: Any, now: int, counts: Counter[tuple[str, str]]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None, tuple[dict[str, Any], Delivery] | None]:
    try:
        if not isinstance(raw, bytes):
            raise SchemaError("record has no value")
        event = _delivery_event.decode(raw)
    except SchemaError as exc:
        counts[("rejected", Reason.MALFORMED)] += 1
        return [], rejected_record(Rejection(Reason.MALFORMED, str(exc)), key, None, message), None
    if event["driver_id"] != key:
        counts[("rejected", Reason.WRONG_KEY)] += 1
        rejection = Rejection(Reason.WRONG_KEY, "record key is not the event's driver_id")
        return [], rejected_record(rejection, key, event, message), None
    result, alerts = on_event(state, key, event, now, CONFIG)
    if isinstance(result, Rejection):
        counts[("rejected", result.reason)] += 1
        return alerts, rejected_record(result, key, event, message), None
    counts[("applied", result.status)] += 1
    return alerts, None, (event, result)


def judge_batch(
    events: Sequence[Any], load_state: Callable[[bytes], DriverState], states: dict[str, DriverState]
) -> tuple[list[tuple[str, bytes, bytes]], Counter[tuple[str, str]]]:
    """Apply a batch of pings and delivery events in order; return the records to send and the counts."""
    outputs: list[tuple[str, bytes, bytes]] = []
    pings: list[dict[str, Any]] = []
    counts: Counter[tuple[str, str]] = Counter()
    for event in events:
        message = event.message
        tag = TAGS.get(message.topic, "p")
        processed[(message.topic, message.partition)] = message.offset
        try:
            key = event.key.decode() if isinstance(event.key, bytes) else None
        except UnicodeDecodeError:
            key = None
        if key is None:
            if tag == "e":
                rejection = Rejection(Reason.WRONG_KEY, "record has no UTF-8 driver id key")
                record = rejected_record(rejection, None, None, message)
                outputs.append((REJECTED_TOPIC, b"", _rejected.encode(record)))
                counts[("rejected", Reason.WRONG_KEY)] += 1
            else:
                log.error("clean ping without a UTF-8 driver id key on %s skipped", message.topic)
                counts[("bad_ping", Reason.WRONG_KEY)] += 1
            continue
        state = states.get(key)
        if state is None:
            state = states[key] = load_state(key.encode())
        if message.offset <= state.offsets.get(tag, -1):
            continue  # applied before a crash: its outputs are already durable
        state.offsets[tag] = message.offset
        now = int(message.timestamp * 1000)
        dead_letter = None
        if tag == "e":
            alerts, dead_letter, applied = _judge_event(state, key, event.value, message, now, counts)
            if applied is not None:
                source, delivery = applied
                outputs += arrival_outputs(state, key, delivery)
                applied_value = _delivery_event.encode(applied_record(source, delivery))
                outputs.append((APPLIED_TOPIC, key.encode(), applied_value))
        else:
            try:
                ping = _clean_ping.decode(event.value)
            except SchemaError as exc:
                log.error("undecodable record on %s: %s", message.topic, exc)
                counts[("bad_ping", "malformed")] += 1
                continue
            fault = ping_fault(ping)
            if fault is not None:
                log.error(
                    "clean ping %s on %s skipped (reason malformed): %s",
                    ping["ping_id"],
                    message.topic,
                    fault,
                )
                counts[("bad_ping", "malformed")] += 1
                continue
            pings.append(ping)
            alerts = on_ping(state, key, ping, now, CONFIG)
            outputs += eta_outputs(state, key, ping, now)
        if dead_letter is not None:
            outputs.append((REJECTED_TOPIC, key.encode(), _rejected.encode(dead_letter)))
        outputs += encode_alerts(key, alerts, "event" if tag == "e" else "ping")
    # Sent and acknowledged with the rest, before the states persist: a crash replays the batch, at worst
    # counting its samples twice; a ping the offsets skip on replay is not sampled again.
    outputs += speed_records(pings)
    return outputs, counts


def encode_alerts(key: str, alerts: list[dict[str, Any]], trigger: str) -> list[tuple[str, bytes, bytes]]:
    """Avro-encode alerts for the alerts topic, counting them."""
    for alert in alerts:
        metrics.ALERTS.labels(alert["kind"], trigger).inc()
    return [(ALERTS_TOPIC, key.encode(), _alert.encode(alert)) for alert in alerts]


# Records sent and waited for (its own producer: see streams/outputs.py).
deliver_records = RecordSender(settings).deliver


def index_deliveries(key_bytes: bytes, packed: bytes | None, state: DriverState | None = None) -> None:
    """Point each delivery of a driver's stored state at the driver; forget those its older state had."""
    driver_id = key_bytes.decode()
    _, old_ids = _indexed.pop(key_bytes, (b"", ()))
    for delivery_id in old_ids:
        if delivery_index.get(delivery_id) == driver_id:
            del delivery_index[delivery_id]
    if not packed:
        return
    state = state or DriverState.unpack(packed)
    ids = tuple(d.delivery_id for d in [*state.deliveries.values(), *state.finished])
    for delivery_id in ids:
        delivery_index[delivery_id] = driver_id
    _indexed[key_bytes] = (packed, ids)


def refresh_index() -> None:
    """Re-index the drivers whose stored bytes changed outside the agent, and drop those no longer here."""
    store = driver_state.data
    for key_bytes in [key for key in _indexed if key not in store]:
        index_deliveries(key_bytes, None)
    for key_bytes, packed in list(store.items()):
        seen = _indexed.get(key_bytes)
        if seen is None or seen[0] is not packed:
            index_deliveries(key_bytes, packed)


# Each driver's state object, reused while the store holds the bytes it was persisted as (streams/unpacked).
unpacked_states = UnpackedStates(lambda key: driver_state.data.get(key), DriverState.unpack)
load_state = unpacked_states.load


async def persist_states(states: dict[str, DriverState]) -> None:
    """Write states to the changelog, wait for the broker, then to the table's store (as clean_pings does)."""
    changelog = driver_state.changelog_topic.get_topic_name()
    records = [(changelog, key.encode(), state.pack()) for key, state in states.items()]
    await deliver_records(records)
    store = driver_state.data
    for (_, key_bytes, packed), state in zip(records, states.values(), strict=True):
        store[key_bytes] = packed
        unpacked_states.keep(key_bytes, packed, state)
        index_deliveries(key_bytes, packed, state)


def count(counts: Counter[tuple[str, str]]) -> None:
    """Add a batch's outcomes to the metrics."""
    for (outcome, reason), n in counts.items():
        if outcome == "bad_ping":  # skipped, with an error logged: counted with the pipeline's rejected pings
            stream_metrics.PINGS_REJECTED.labels("track", reason).inc(n)
        else:
            metrics.DELIVERY_EVENTS.labels(outcome, reason).inc(n)


@app.agent(driver_inputs_topic, concurrency=1)
async def track_drivers(stream: faust.StreamT[bytes]) -> None:
    """Keep each driver's live state from its pings and delivery events; raise and resolve alerts."""
    async for events in stream.take_events(BATCH_SIZE, within=BATCH_WITHIN_S):  # type: ignore[attr-defined]
        async with state_lock:
            states: dict[str, DriverState] = {}
            try:
                outputs, counts = judge_batch(events, load_state, states)
                await deliver_records(outputs)
                await persist_states(states)
            except BaseException:
                unpacked_states.clear()  # objects changed in place but not persisted must not be reused
                raise
        count(counts)
        # Clean ping (or event) on its topic to the driver's state persisted: the state's share of the 2 s.
        stream_metrics.observe_processing_latency(
            "track", time.time(), (event.message.timestamp for event in events)
        )


def partition_of(key: bytes) -> int:
    """Return the partition Kafka's default partitioner gives a key."""
    return (murmur2(key) & 0x7FFFFFFF) % settings.partitions


def caught_up(partition: int) -> bool:
    """Tell whether this worker owns a partition and has processed both its inputs up to their end."""
    consumer = app.consumer
    # Offsets committed before this process started count as processed (Faust keeps them per partition).
    committed = getattr(consumer, "_committed_offset", {})
    for topic in TAGS:
        tp = faust.types.TP(topic, partition)
        if tp not in consumer.assignment():
            return False
        highwater = consumer.highwater(tp)
        done = max(processed.get((topic, partition), -1), committed.get(tp) or -1)
        if highwater is None or done + 1 < highwater:
            return False
    return True


async def tick(now: int, ready: Callable[[int], bool]) -> list[dict[str, Any]]:
    """Run the timer rules over this worker's drivers at wall time ``now``; return the alerts sent."""
    async with state_lock:
        states: dict[str, DriverState] = {}
        raised: list[dict[str, Any]] = []
        outputs: list[tuple[str, bytes, bytes]] = []
        try:
            for key_bytes, packed in list(driver_state.data.items()):
                if packed is None or not ready(partition_of(key_bytes)):
                    continue
                state, key = load_state(key_bytes), key_bytes.decode()
                movement = state.movement
                before = (len(movement.windows), movement.still_since, len(state.alerts))
                alerts = on_tick(state, key, now, CONFIG)
                # Persist only what a tick changed that matters: closed windows, the stop, the alerts.
                if alerts or before != (len(movement.windows), movement.still_since, len(state.alerts)):
                    states[key] = state
                raised += alerts
                outputs += encode_alerts(key, alerts, "timer")
            await deliver_records(outputs)
            await persist_states(states)
        except BaseException:
            unpacked_states.clear()
            raise
    return raised


@app.timer(interval=settings.tick_interval_s)
async def watch_silent_drivers() -> None:
    """Close movement windows and detect offline drivers on the wall clock."""
    started = time.perf_counter()
    # Once per partition and pass: asking the consumer for its assignment per driver cost more than the rules.
    await tick(int(time.time() * 1000), functools.cache(caught_up))
    metrics.TICK_SECONDS.observe(time.perf_counter() - started)


def lookup(driver_id: str) -> DriverState | None:
    """Return a driver's state from this worker's store, or None if this worker holds none."""
    # From the stored bytes, not the agent's live object: an answer never shows what is not yet durable.
    packed = driver_state.data.get(driver_id.encode())
    return DriverState.unpack(packed) if packed else None


def _indexed_delivery(delivery_id: str) -> tuple[str, Delivery] | None:
    """Return (driver id, delivery) if the index points at a driver of this store that holds it."""
    driver_id = delivery_index.get(delivery_id)
    state = lookup(driver_id) if driver_id else None
    found = state.find(delivery_id) if state else None
    return (driver_id, found) if driver_id and found else None


def find_delivery(delivery_id: str) -> tuple[str, Delivery] | None:
    """Return (driver id, delivery) for a delivery held by this worker's drivers."""
    found = _indexed_delivery(delivery_id)
    if found is None:
        refresh_index()  # a miss: recovery or a rebalance may have changed the store since
        found = _indexed_delivery(delivery_id)
    return found
