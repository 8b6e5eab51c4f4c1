"""Bad records for every agent that decodes raw bytes from a topic, and the proof that it kept going.

For each case: N drawn payloads (see ``avro_inputs.payloads``) go onto the topic, keyed mostly as the agent
expects; the agent must account for every undecodable one (a dead letter or a skip counted with its reason,
read from the worker's /metrics), then process one valid record sent after them (its effect is looked for
where a user would see it: a topic, the dispatcher API, a counter).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition
from hypothesis import strategies as st

from base import topics
from base.exceptions import SchemaError
from connectors.whatsapp.phones import hash_phone
from loadtest.fuzzing.records import FROM_RECORD, Produced, metric_sum, produce, produce_drawn
from loadtest.fuzzing.stack import FuzzStack
from schemas.codecs import codec

Labels = dict[str, str]
Processed = Callable[["FuzzStack", str, float], bool]  # did the valid record take effect (given a baseline)?


@dataclass(frozen=True)
class AgentCase:
    """One agent and its topic: the counter that accounts for bad records, and a valid record to follow."""

    agent: str
    topic: str
    schema: str
    key_field: str
    counted: tuple[str, Callable[[Labels], bool]]  # counter family, labels of a bad record's outcome
    sentinel: Callable[[FuzzStack, str], tuple[bytes, dict[str, Any]]]  # (key, valid record) for an id
    processed: Processed
    baseline: Callable[[FuzzStack], float] = lambda stack: 0.0  # read just before the valid record


@dataclass
class AgentOutcome:
    """What one case found."""

    case: AgentCase
    produced: Produced
    accounted: float = 0.0
    processing_after: bool = False
    elapsed_s: float = 0.0

    @property
    def unaccounted(self) -> int:
        """Undecodable records that left no dead letter and no counted skip."""
        return max(0, self.produced.undecodable - int(self.accounted))


def _now() -> int:
    return int(time.time() * 1000)


def found_on(stack: FuzzStack, topic: str, schema: str, match: Callable[[dict[str, Any]], bool]) -> bool:
    """Tell whether a record of ``topic`` (from the start) matches, reading for up to 20 s."""
    name = topics.qualified(topic, stack.settings.topic_prefix)
    group = f"fuzz-{uuid.uuid4()}"
    consumer = Consumer({"bootstrap.servers": stack.settings.kafka_bootstrap, "group.id": group})
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, 0) for p in partitions])
        deadline = time.monotonic() + 20.0
        while time.monotonic() < deadline:
            for message in consumer.consume(1000, timeout=0.5):
                value = message.value() if message.error() is None else None
                if value:
                    try:
                        if match(codec(schema).decode(value)):
                            return True
                    except SchemaError:
                        continue
    finally:
        consumer.close()
    return False


def _api_status(stack: FuzzStack, path: str) -> int:
    headers = {"X-API-Key": stack.credentials.dispatcher_key}
    return httpx.get(f"{stack.urls['worker']}{path}", headers=headers, timeout=10.0).status_code


def _ping(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    now = _now()
    driver = f"{sid}-drv"
    record = {"ping_id": sid, "driver_id": driver, "device_ts": now - 1000, "lat": -23.55,
              "lon": -46.63, "seq": 1, "source": "app", "received_ts": now}  # fmt: skip
    return driver.encode(), record


def _clean_ping(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    key, record = _ping(stack, sid)
    record.update(h3_r9=0x89A8100C0FFFFFF, h3_r7=0x87A8100C0FFFFFF, step_m=0.0, processed_ts=_now())
    return key, record


def _event(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    driver = f"{sid}-drv"  # a driver of its own: no drawn record has touched its state
    record = {"event_id": sid, "delivery_id": f"{sid}-dlv", "driver_id": driver, "type": "assigned",
              "ts": _now(), "pickup_lat": -23.55, "pickup_lon": -46.63, "dropoff_lat": -23.56,
              "dropoff_lon": -46.64, "promised_at": _now() + 3_600_000}  # fmt: skip
    return driver.encode(), record


def _message(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    from_hash = hash_phone(stack.env["WHATSUP_PHONE_HASH_KEY"], stack.credentials.driver_phone)
    record = {"message_id": sid, "provider": "meta", "from_hash": from_hash, "type": "text", "text": "oi",
              "ts": _now(), "received_ts": _now()}  # fmt: skip
    return from_hash.encode(), record


def _erasure(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    # The driver the CleanPing case's valid record gave a live state (its id derives from the run's id).
    driver = f"{stack.sentinel_id('track_drivers (pings)')}-drv"
    record = {"erasure_id": sid, "subject_hash": "fuzz", "driver_id": driver, "requested_at": _now(),
              "requested_by": "fuzz"}  # fmt: skip
    return driver.encode(), record


def _alert(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    driver = stack.credentials.driver_id
    record = {"alert_id": sid, "kind": "stall", "driver_id": driver, "started_at": _now() - 600_000,
              "detected_at": _now(), "lat": -23.55, "lon": -46.63, "h3_r9": 0x89A8100C0FFFFFF}  # fmt: skip
    return driver.encode(), record


def _eta(stack: FuzzStack, sid: str) -> tuple[bytes, dict[str, Any]]:
    driver = stack.credentials.driver_id
    record = {"delivery_id": f"{sid}-dlv", "driver_id": driver, "eta": _now() + 600_000,
              "remaining_m": 1000.0, "speed_mps": 6.0, "method": "fuzz", "computed_at": _now()}  # fmt: skip
    return driver.encode(), record


def _notify_outcomes(stack: FuzzStack) -> float:
    """Messages the notify agents made, and hold-backs with a reason other than an undecodable record."""
    url = stack.urls["worker"]
    held = metric_sum(
        url, "whatsup_whatsapp_notify_suppressed", lambda labels: labels["reason"] != "undecodable"
    )
    return metric_sum(url, "whatsup_whatsapp_notify_messages") + held


def _console_has(stack: FuzzStack, sid: str) -> bool:
    """Tell whether the console lists incident ``sid``, paging through every stall it holds."""
    headers = {"X-API-Key": stack.credentials.dispatcher_key}
    cursor = ""
    for _ in range(100):
        url = f"{stack.urls['console']}/v1/alerts?kind=stall&limit=500" + (
            f"&cursor={cursor}" if cursor else ""
        )
        answer = httpx.get(url, headers=headers, timeout=10.0)
        if answer.status_code != 200:
            return False
        page = answer.json()
        if any(alert.get("alert_id") == sid for alert in page["alerts"]):
            return True
        cursor = page.get("next_cursor") or ""
        if not cursor:
            return False
    return False


def _labels(**wanted: str) -> Callable[[Labels], bool]:
    return lambda labels: all(labels.get(name) == value for name, value in wanted.items())


def _topic_has(topic: str, schema: str, field: str, value: Callable[[str], str]) -> Processed:
    return lambda stack, sid, _: found_on(stack, topic, schema, lambda record: record[field] == value(sid))


def _api_answers(path: Callable[[FuzzStack, str], str], status: int) -> Processed:
    return lambda stack, sid, _: _api_status(stack, path(stack, sid)) == status


def _erased_driver(stack: FuzzStack, sid: str) -> str:
    return f"/v1/drivers/{stack.sentinel_id('track_drivers (pings)')}-drv"


def _notified(stack: FuzzStack, sid: str, before: float) -> bool:
    return _notify_outcomes(stack) > before


CASES = (
    AgentCase(
        "clean_pings", topics.GPS_PINGS_RAW, "GpsPing", "driver_id",
        ("whatsup_pings_rejected", _labels(stage="clean", reason="malformed")),
        _ping, _topic_has(topics.GPS_PINGS_CLEAN, "CleanPing", "ping_id", lambda sid: sid),
    ),
    AgentCase(
        "track_drivers (events)", topics.DELIVERIES_EVENTS, "DeliveryEvent", "driver_id",
        ("whatsup_deliveries_events", _labels(outcome="rejected")),
        _event, _api_answers(lambda stack, sid: f"/v1/deliveries/{sid}-dlv", 200),
    ),
    AgentCase(
        "track_drivers (pings)", topics.GPS_PINGS_CLEAN, "CleanPing", "driver_id",
        ("whatsup_pings_rejected", _labels(stage="track")),
        _clean_ping, _api_answers(lambda stack, sid: f"/v1/drivers/{sid}-drv", 200),
    ),
    AgentCase(
        "converse_with_drivers", topics.WHATSAPP_EVENTS_RAW, "WhatsAppEvent", "from_hash",
        ("whatsup_whatsapp_conversation_errors", _labels(reason="undecodable")),
        _message,
        _topic_has(topics.WHATSAPP_OUTBOUND, "OutboundMessage", "message_key", "reply:meta:{}".format),
    ),
    AgentCase(
        "erase_driver_states", topics.PRIVACY_ERASURES, "Erasure", "driver_id",
        ("whatsup_deliveries_erasures", _labels(outcome="malformed")),
        _erasure, _api_answers(_erased_driver, 404),
    ),
    AgentCase(
        "notify_alerts, console feed", topics.ALERTS, "Alert", "driver_id",
        ("whatsup_whatsapp_notify_suppressed", _labels(reason="undecodable")),
        _alert, lambda stack, sid, before: _notified(stack, sid, before) and _console_has(stack, sid),
        _notify_outcomes,
    ),
    AgentCase(
        "notify_eta_changes", topics.DELIVERIES_ETA, "EtaUpdate", "driver_id",
        ("whatsup_whatsapp_notify_suppressed", _labels(reason="undecodable")),
        _eta, _notified, _notify_outcomes,
    ),
)  # fmt: skip


def _keys(case: AgentCase, stack: FuzzStack) -> st.SearchStrategy[bytes | None]:
    """Mostly the key the agent expects for the drawn record, else none, empty, or not UTF-8."""
    usual = FROM_RECORD  # the record's own key field when it decodes
    odd = st.sampled_from([None, b"", b"\xff\xfe", stack.credentials.driver_id.encode(), b"x" * 300])
    return st.one_of(st.just(usual), st.just(usual), st.just(usual), odd)


def _wait(check: Callable[[], bool], alive: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``check`` until it holds, the timeout, or the process it asks is gone."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and alive():
        try:
            if check():
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def fuzz_agent(stack: FuzzStack, case: AgentCase, count: int, timeout_s: float = 180.0) -> AgentOutcome:
    """Produce ``count`` drawn records for ``case``, wait until they are accounted for, then check that a
    valid record sent after them is processed."""
    started = time.monotonic()
    url = stack.urls["worker"]
    family, labels = case.counted
    before = metric_sum(url, family, labels) if stack.alive("worker") else 0.0
    name = topics.qualified(case.topic, stack.settings.topic_prefix)
    produced = produce_drawn(stack.settings, name, case.schema, count, _keys(case, stack), case.key_field)
    outcome = AgentOutcome(case, produced)

    def accounted() -> bool:
        outcome.accounted = metric_sum(url, family, labels) - before
        return outcome.accounted >= produced.undecodable

    def alive() -> bool:
        return stack.alive("worker")

    _wait(accounted, alive, timeout_s)
    if not alive():
        outcome.elapsed_s = time.monotonic() - started
        return outcome
    baseline = case.baseline(stack)
    sid = stack.sentinel_id(case.agent)
    key, record = case.sentinel(stack, sid)
    produce(stack.settings, name, [(key, codec(case.schema).encode(record))])
    outcome.processing_after = _wait(lambda: case.processed(stack, sid, baseline), alive, 60.0)
    outcome.elapsed_s = time.monotonic() - started
    return outcome
