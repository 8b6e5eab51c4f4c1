"""LGPD erasure on the real stack: after ``whatsup erase``, no ClickHouse table, Redis key or driver state
returns the person, a restarted worker recovers none, the audit names them only by a keyed hash, another
driver's data is untouched, and erasing again changes nothing else.
"""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
import uuid
from pathlib import Path

import redis
import redis.asyncio
from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.settings import Settings
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.registry import Customer, Driver, Registry
from sinks.query import run_query
from streams.console.feed import changelog_topic
from streams.erase import audit_hash
from tests.integration.sender_stack import outbound, produce_outbound
from tests.integration.sink_stack import SinkProcess
from tests.integration.stack import ROOT, WorkerProcess, free_port, wait_until
from tests.integration.test_deliveries_on_broker import (
    DISPATCH,
    FAST_RULES,
    INGEST,
    ScriptedPhone,
    event,
    get,
    post,
)

GONE_PHONE, KEPT_PHONE, CUSTOMER_PHONE = "+5511990000001", "+5511990000002", "+5511990000003"


async def load_registry(settings: Settings, hash_key: str, people: list[Driver | Customer]) -> None:
    client = redis.asyncio.Redis.from_url(settings.redis_url)
    try:
        await Registry(client, hash_key, settings.topic_prefix).load(people)
    finally:
        await client.aclose()


def whatsup(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "streams", *args],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def string_columns(settings: Settings) -> list[tuple[str, str]]:
    """Every (table, column) of a String type in a table that stores rows."""
    rows = run_query(
        settings,
        "SELECT c.table AS t, c.name AS c FROM system.columns AS c INNER JOIN system.tables AS s"
        " ON s.database = c.database AND s.name = c.table WHERE c.database = currentDatabase()"
        " AND s.engine LIKE '%MergeTree' AND c.type LIKE '%String%' AND c.type NOT LIKE '%Array%'",
    )
    return [(row["t"], row["c"]) for row in rows]


def mentions(settings: Settings, needles: list[str]) -> dict[str, int]:
    """Count, per table.column, the rows whose value contains any of ``needles``."""
    found = {}
    for table, column in string_columns(settings):
        condition = " OR ".join(
            f"position(ifNull(toString({column}), ''), {{n{i}:String}}) > 0" for i in range(len(needles))
        )
        params = {f"n{i}": needle for i, needle in enumerate(needles)}
        n = int(run_query(settings, f"SELECT count() AS n FROM {table} WHERE {condition}", params)[0]["n"])
        if n:
            found[f"{table}.{column}"] = n
    return found


def counts_of(settings: Settings, driver: str) -> dict[str, int]:
    tables = ("gps_pings", "delivery_events", "whatsapp_messages", "api_access_log", "driver_daily_stats")
    return {
        table: int(
            run_query(
                settings, f"SELECT count() AS n FROM {table} WHERE driver_id = {{d:String}}", {"d": driver}
            )[0]["n"]
        )
        for table in tables
    }


def redis_mentions(settings: Settings, needles: list[bytes]) -> list[bytes]:
    """Every Redis key of this deployment whose name or string value contains any of ``needles``."""
    client = redis.Redis.from_url(settings.redis_url)
    try:
        hits = []
        for key in client.scan_iter(match=f"{settings.topic_prefix}*", count=1000):
            value = client.get(key) if client.type(key) == b"string" else b""
            if any(needle in key or needle in (value or b"") for needle in needles):
                hits.append(key)
        return hits
    finally:
        client.close()


def raw_records(settings: Settings, topic: str) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) on ``topic``, read from the beginning to its current end, undecoded."""
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap, "group.id": f"read-{uuid.uuid4().hex}"}
    )
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        records, left = [], sum(ends.values())
        deadline = time.monotonic() + 30
        while left > 0 and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.5):
                if message.error() is None:
                    records.append((message.key(), message.value()))
                    left -= 1
        return records
    finally:
        consumer.close()


def test_erasing_a_driver_and_a_customer_leaves_nothing_of_them_and_everything_else(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    hash_key = secrets.token_hex(16)
    env = {
        **stack_env,
        **FAST_RULES,
        "WHATSUP_PHONE_HASH_KEY": hash_key,
        "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'clickhouse'}",
        "WHATSUP_SINK_PORT": str(free_port()),
        "WHATSUP_SINK_FLUSH_INTERVAL_S": "0.2",
    }
    settings = Settings.from_env(env)
    run = uuid.uuid4().hex[:6]
    gone, kept, customer = f"gone-{run}", f"kept-{run}", f"cust-{run}"
    hashes = {phone: hash_phone(hash_key, phone) for phone in (GONE_PHONE, KEPT_PHONE, CUSTOMER_PHONE)}
    people = [
        Driver(gone, GONE_PHONE, "active", "pt-BR"),
        Driver(kept, KEPT_PHONE, "active", "pt-BR"),
        Customer(customer, CUSTOMER_PHONE, "pt-BR"),
    ]
    asyncio.run(load_registry(settings, hash_key, people))
    sink, worker = SinkProcess(env, tmp_path / "sink.log"), WorkerProcess(env, tmp_path / "worker.log")
    again = WorkerProcess(env, tmp_path / "worker-again.log")
    try:
        sink.start_supervised()
        worker.start()
        with ScriptedPhone(stack_settings, gone), ScriptedPhone(stack_settings, kept):
            for driver, delivery in ((gone, f"{gone}-d"), (kept, f"{kept}-d")):
                assigned = {**event(driver, delivery, "assigned", 1), "customer_ref": customer}
                assert post(worker, INGEST, assigned).status_code == 202
            time.sleep(3)
        produce_outbound(
            settings,
            [
                outbound(f"m-{run}-{i}", phone, to_hash=hashes[phone], driver_id=driver)
                for i, (phone, driver) in enumerate(
                    ((GONE_PHONE, gone), (KEPT_PHONE, kept), (CUSTOMER_PHONE, None))
                )
            ],
        )
        for driver in (gone, kept):
            wait_until(
                lambda d=driver: get(worker, f"/v1/drivers/{d}", DISPATCH).status_code == 200, "the driver"
            )
        wait_until(
            lambda: all(
                counts_of(settings, d)["api_access_log"] and counts_of(settings, d)["whatsapp_messages"]
                for d in (gone, kept)
            ),
            "every table's rows in ClickHouse",
        )
        needles = [
            gone,
            customer,
            *(hashes[p] for p in (GONE_PHONE, CUSTOMER_PHONE)),
            GONE_PHONE[1:],
            CUSTOMER_PHONE[1:],
        ]
        assert mentions(settings, needles), "the person is in ClickHouse before the erasure"
        kept_before = counts_of(settings, kept)

        erased = whatsup(
            env, "erase", "--driver", gone, "--requested-by", "dpo", "--reason", "T-1", "--wait", "60"
        )
        assert erased.returncode == 0, erased.stdout + erased.stderr
        assert "applied in ClickHouse" in erased.stdout
        erased = whatsup(env, "erase", "--phone", CUSTOMER_PHONE, "--requested-by", "dpo", "--wait", "60")
        assert erased.returncode == 0, erased.stdout + erased.stderr

        # ClickHouse: no string column of any table holds the driver, the customer or their numbers.
        assert mentions(settings, needles) == {}
        assert counts_of(settings, kept) == kept_before
        deliveries = run_query(
            settings, "SELECT customer_ref FROM delivery_events WHERE driver_id = {d:String}", {"d": kept}
        )
        assert deliveries and all(row["customer_ref"] is None for row in deliveries)  # the delivery stays
        audit = run_query(
            settings, "SELECT subject_hash, requested_by, reason, tables FROM erasures ORDER BY requested_at"
        )
        assert [(row["requested_by"], row["reason"]) for row in audit] == [("dpo", "T-1"), ("dpo", "")]
        assert audit[1]["subject_hash"] == audit_hash(hash_key, "phone", CUSTOMER_PHONE)
        assert "gps_pings" in audit[0]["tables"] and audit[1]["tables"] == [
            "whatsapp_messages",
            "whatsapp_inbound",
            "guardrail_events",
            "delivery_events",
        ]

        # Redis: no key or value names them; the other driver is still registered.
        assert redis_mentions(settings, [n.encode() for n in needles]) == []
        assert redis_mentions(settings, [kept.encode()])

        # Driver state: gone from the worker, tombstoned on the changelog, not recovered by a new worker.
        wait_until(
            lambda: get(worker, f"/v1/drivers/{gone}", DISPATCH).status_code == 404, "the state erased"
        )
        changelog = changelog_topic(settings)
        values = [value for key, value in raw_records(settings, changelog) if key == gone.encode()]
        assert values and values[-1] is None
        worker.kill()
        again.start()
        wait_until(lambda: get(again, f"/v1/drivers/{kept}", DISPATCH).status_code == 200, "the kept driver")
        assert get(again, f"/v1/drivers/{gone}", DISPATCH).status_code == 404

        # Idempotent: a second erasure of the same driver finds nothing more to take.
        erased = whatsup(env, "erase", "--driver", gone, "--requested-by", "dpo", "--wait", "60")
        assert erased.returncode == 0, erased.stdout + erased.stderr
        assert "Redis: 0 key(s) deleted" in erased.stdout
        assert mentions(settings, needles) == {}
        assert counts_of(settings, kept)["gps_pings"] == kept_before["gps_pings"]
        assert len(run_query(settings, "SELECT erasure_id FROM erasures")) == 3
    finally:
        again.stop()
        worker.stop()
        sink.stop()


def test_erase_refuses_a_malformed_phone_and_erases_nothing(
    stack_env: dict[str, str], stack_settings: Settings
) -> None:
    env = {**stack_env, "WHATSUP_PHONE_HASH_KEY": secrets.token_hex(16)}
    refused = whatsup(env, "erase", "--phone", "not-a-phone", "--requested-by", "dpo")
    assert refused.returncode == 65, refused.stdout + refused.stderr
    assert "not an E.164 phone number" in refused.stderr and "nothing erased" in refused.stderr
    topic = topics.qualified(topics.PRIVACY_ERASURES, stack_settings.topic_prefix)
    assert raw_records(stack_settings, topic) == []
