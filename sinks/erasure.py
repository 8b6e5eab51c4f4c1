"""LGPD erasure in ClickHouse: a request from ``privacy.erasures`` deletes the person's rows everywhere and
leaves one audit row in ``erasures`` naming the person only by a keyed hash.

A driver's rows go from every table that names the driver (pings, rejected pings, delivery events, ETAs,
alerts, dispatchers' actions on them, WhatsApp messages, API access, the daily aggregate); a phone's
WhatsApp messages go by the phone's keyed hash; as a customer, a person's deliveries stay (they are the
driver's and the company's) and lose the customer reference. Deletes are mutations waited for
(``mutations_sync = 2``), so the audit row is written only once the rows are gone; a request applied twice
deletes nothing more and keeps one audit row (the table replaces by ``erasure_id``).
"""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime
from typing import Any

from clickhouse_connect.driver.client import Client
from confluent_kafka import Consumer, KafkaError, TopicPartition

from base import topics
from base.exceptions import SchemaError
from base.kafka import client_config
from base.settings import Settings
from schemas.codecs import codec
from sinks import metrics

log = logging.getLogger(__name__)

# Every (table, column) holding a driver id; the rows go.
DRIVER_COLUMNS = (
    ("gps_pings", "driver_id"),
    ("gps_pings_rejected", "driver_id"),
    ("delivery_events", "driver_id"),
    ("eta_updates", "driver_id"),
    ("alerts", "driver_id"),
    ("alert_actions", "driver_id"),
    ("whatsapp_messages", "driver_id"),
    ("api_access_log", "driver_id"),
    ("driver_daily_stats", "driver_id"),
    ("guardrail_events", "driver_id"),
)
# Every (table, column) holding a phone's keyed hash; the rows go.
PHONE_COLUMNS = (
    ("whatsapp_messages", "to_hash"),
    ("whatsapp_inbound", "from_hash"),
    ("guardrail_events", "from_hash"),
)
# Every (table, column) holding a customer reference; the column is cleared, the row stays.
CUSTOMER_COLUMNS = (("delivery_events", "customer_ref"),)
_SYNC = " SETTINGS mutations_sync = 2"


def statements(request: dict[str, Any]) -> list[tuple[str, str, dict[str, str]]]:
    """Return (table, SQL, parameters) of every mutation a request calls for."""
    planned = []
    if request.get("driver_id"):
        for table, column in DRIVER_COLUMNS:
            sql = f"ALTER TABLE {table} DELETE WHERE {column} = {{v:String}}{_SYNC}"
            planned.append((table, sql, {"v": request["driver_id"]}))
    for phone_hash in request.get("phone_hashes", []):
        for table, column in PHONE_COLUMNS:
            sql = f"ALTER TABLE {table} DELETE WHERE {column} = {{v:String}}{_SYNC}"
            planned.append((table, sql, {"v": phone_hash}))
    for ref in request.get("customer_refs", []):
        for table, column in CUSTOMER_COLUMNS:
            sql = f"ALTER TABLE {table} UPDATE {column} = NULL WHERE {column} = {{v:String}}{_SYNC}"
            planned.append((table, sql, {"v": ref}))
    return planned


def erase(client: Client, request: dict[str, Any]) -> list[str]:
    """Apply a request's deletes, then write its audit row; return the tables touched."""
    touched: list[str] = []
    for table, sql, parameters in statements(request):
        client.command(sql, parameters=parameters)
        if table not in touched:
            touched.append(table)
    client.insert(
        "erasures",
        [
            [
                request["erasure_id"],
                request["subject_hash"],
                datetime.fromtimestamp(request["requested_at"] / 1000, tz=UTC),
                request["requested_by"],
                request["reason"],
                touched,
            ]
        ],
        column_names=["erasure_id", "subject_hash", "requested_at", "requested_by", "reason", "tables"],
    )
    return touched


class Eraser:
    """Consume ``privacy.erasures`` in a thread of the sink process and apply each request; commit after.

    Its own consumer group: a request is applied once the sink's engine has done it, whatever the
    record sinks are doing; a request that fails is retried from the same offset (deletes are idempotent).
    """

    def __init__(self, settings: Settings, client: Client, poll_s: float = 0.5) -> None:
        self.settings = settings
        self.client = client
        self.poll_s = poll_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="eraser", daemon=True)
        self._decode = codec("Erasure").decode

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        consumer = Consumer(
            client_config(
                self.settings,
                **{
                    "group.id": topics.consumer_group("sink-erasures", self.settings.app_id),
                    "enable.auto.commit": False,
                    "auto.offset.reset": "earliest",
                },
            )
        )
        consumer.subscribe([topics.qualified(topics.PRIVACY_ERASURES, self.settings.topic_prefix)])
        try:
            while not self._stop.is_set():
                message = consumer.poll(self.poll_s)
                if message is None:
                    continue
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        log.warning("privacy.erasures: %s", error)
                    continue
                if self._apply(message.value()):
                    consumer.commit(message=message, asynchronous=False)
                else:
                    # Not applied (ClickHouse refused or is away): read the same record again.
                    where = (str(message.topic()), int(message.partition() or 0), int(message.offset() or 0))
                    consumer.seek(TopicPartition(*where))
                    self._stop.wait(2.0)
        finally:
            consumer.close()

    def _apply(self, value: bytes | None) -> bool:
        """Apply one request; True when it is done with (applied, or undecodable and reported)."""
        try:
            request = self._decode(value or b"")
        except SchemaError as exc:
            log.error("privacy.erasures: undecodable request skipped (reason malformed): %s", exc)
            metrics.ERASURES.labels("malformed").inc()
            return True
        try:
            touched = erase(self.client, request)
        except Exception as exc:  # the engine's errors are many; the request waits and is retried
            log.warning(
                "erasure %s not applied yet (reason clickhouse_error): %s", request["erasure_id"], exc
            )
            metrics.ERASURES.labels("retried").inc()
            return False
        log.info("erasure %s applied to %s", request["erasure_id"], ", ".join(touched) or "no table")
        metrics.ERASURES.labels("applied").inc()
        return True
