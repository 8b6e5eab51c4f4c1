"""ClickHouseSink against the real engine (chDB in this process, one data directory per test)."""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from base import topics
from base.exceptions import SettingsError
from base.settings import Settings
from schemas.codecs import codec
from sinks.audit import exactly_once_problems
from sinks.clickhouse import ClickHouseSink, _RecentIds
from sinks.engine import make_client
from sinks.erasure import statements as erasure_statements
from sinks.migrate import MIGRATIONS_DIR, apply_migrations
from sinks.staging import ROUTES_BY_TOPIC, container_file
from tests.sink_records import clean_ping, encoded_pings

CLEAN = topics.GPS_PINGS_CLEAN


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture()
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env(
        {
            "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
            "WHATSUP_SINK_BATCH_SIZE": "100",
            # Batches cut at the batch size however far behind the writer is, unless a test says otherwise.
            "WHATSUP_SINK_BACKLOG_BATCH_SIZE": "100",
        }
    )


@pytest.fixture()
def client(settings: Settings) -> Iterator[Client]:
    client = make_client(settings)
    try:
        yield client
    finally:
        client.close()  # chDB holds one engine per process: the next test opens another directory


def query(client: Client) -> Any:
    def run(sql: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        return list(client.query(sql, parameters=params).named_results())

    return run


def scalar(client: Client, sql: str) -> Any:
    return client.query(sql).result_rows[0][0]


def with_batch_size(settings: Settings, batch_size: int) -> Settings:
    return Settings.from_env(
        {
            "WHATSUP_CLICKHOUSE_URL": settings.clickhouse_url,
            "WHATSUP_SINK_BATCH_SIZE": str(batch_size),
            "WHATSUP_SINK_BACKLOG_BATCH_SIZE": str(batch_size),
        }
    )


def feed(sink: ClickHouseSink, values: list[bytes], partition: int = 0, start: int = 0) -> None:
    for i, value in enumerate(values):
        sink.add(CLEAN, partition, start + i, value)


def drain(sink: ClickHouseSink) -> list[Any]:
    sink.seal_all()
    written = []
    for topic in sink.due():
        while flushed := sink.flush(topic):
            written += flushed
    return written


def test_migrations_apply_once_and_twice_is_a_no_op(client: Client) -> None:
    first = apply_migrations(client)
    assert first == [
        "0001_event_tables",
        "0002_staging",
        "0003_aggregates",
        "0004_plan_per_log",
        "0005_plan_groups",
        "0006_alert_actions",
        "0007_erasures",
        "0008_delivery_failures",
        "0009_whatsapp_audit",
        "0010_guardrail_events",
    ]
    assert apply_migrations(client) == []
    assert scalar(client, "SELECT count() FROM schema_migrations") == 10
    tables = {row[0] for row in client.query("SHOW TABLES").result_rows}
    assert {"gps_pings", "gps_pings_rejected", "delivery_events", "eta_updates", "alerts"} <= tables
    assert {"whatsapp_messages", "api_access_log", "driver_daily_stats", "cell_speed_hourly"} <= tables
    assert "sink_batch_plan" in tables and "sink_batches" not in tables


def test_an_edited_migration_is_refused(client: Client, tmp_path: Path) -> None:
    directory = tmp_path / "migrations"
    shutil.copytree(MIGRATIONS_DIR, directory)
    apply_migrations(client, directory)
    edited = directory / "0003_aggregates.sql"
    edited.write_text(edited.read_text() + "\n-- changed\n")
    with pytest.raises(SettingsError, match="changed after it was applied"):
        apply_migrations(client, directory)


def test_retention_becomes_each_tables_ttl(client: Client, tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}",
            "WHATSUP_SINK_RETENTION": "api_access_log=400",
        }
    )
    ClickHouseSink(client, settings).start()
    engines = dict(client.query("SELECT name, engine_full FROM system.tables").result_rows)
    assert "TTL toDateTime(device_ts) + toIntervalDay(90)" in engines["gps_pings"]
    assert "TTL toDateTime(ts) + toIntervalDay(400)" in engines["api_access_log"]


def test_batches_land_once_with_partition_and_offset(client: Client, settings: Settings) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    values = [v for _, v in encoded_pings(5, 50)]
    feed(sink, values, partition=2)
    written = drain(sink)
    assert [f.next_offset for f in written] == [100, 200, 250]  # batch size 100, then the rest
    assert sum(f.rows for f in written) == 250
    assert exactly_once_problems(query(client), CLEAN, {2: (0, 250)}) == []
    assert scalar(client, "SELECT count() FROM gps_pings FINAL") == 250


def test_batches_grow_to_the_backlog_size_only_while_earlier_ones_wait_for_the_writer(
    client: Client, settings: Settings
) -> None:
    backlog = Settings.from_env(
        {
            "WHATSUP_CLICKHOUSE_URL": settings.clickhouse_url,
            "WHATSUP_SINK_BATCH_SIZE": "100",
            "WHATSUP_SINK_BACKLOG_BATCH_SIZE": "250",
        }
    )
    sink = ClickHouseSink(client, backlog)
    sink.start()
    values = [v for _, v in encoded_pings(5, 150)]
    feed(sink, values[:600])  # the writer has not written anything yet: a backlog
    written = drain(sink)
    assert [f.next_offset for f in written] == [100, 350, 600]
    feed(sink, values[600:], start=600)  # caught up: back to the batch size
    assert [f.next_offset for f in drain(sink)] == [700, 750]
    assert exactly_once_problems(query(client), CLEAN, {0: (0, 750)}) == []


def test_replay_after_a_crash_between_insert_and_commit_leaves_no_duplicate(
    client: Client, settings: Settings
) -> None:
    values = [v for _, v in encoded_pings(3, 70)]
    first = ClickHouseSink(client, settings)
    first.start()
    feed(first, values[:130])
    first.flush(*first.due())  # batch 0..99 written ... and the process dies before the commit
    clock = FakeClock()
    first.seal_all()
    first.flush(CLEAN)  # 100..129 written by a time flush, also never committed
    # The restarted sink resumes from the last committed offset (none), with other batching settings:
    # the plan makes it cut the same batches with the same tokens regardless.
    other = with_batch_size(settings, 64)
    second = ClickHouseSink(client, other, clock=clock)
    second.assign(CLEAN, 0, committed=0)
    feed(second, values)
    written = drain(second)
    assert [f.next_offset for f in written] == [100, 130, 194, 210]
    assert exactly_once_problems(query(client), CLEAN, {0: (0, 210)}) == []
    assert scalar(client, "SELECT sum(pings) FROM driver_daily_stats") == 210


def test_a_planned_range_keeps_its_start_after_records_that_wrote_nothing(
    client: Client, settings: Settings
) -> None:
    values = [v for _, v in encoded_pings(2, 30)]
    values[:5] = [b"garbage"] * 5  # a batch of dead letters only: nothing inserted, nothing planned
    first = ClickHouseSink(client, settings)
    first.start()
    feed(first, values[:5])
    drain(first)
    feed(first, values[5:], start=5)
    first.seal_all()
    first.flush(CLEAN)  # 5..59 inserted, then a crash before any commit
    second = ClickHouseSink(client, settings)
    second.assign(CLEAN, 0, committed=0)
    feed(second, values)
    written = drain(second)
    assert [(f.next_offset, f.rows) for f in written] == [(5, 0), (60, 55)]
    assert exactly_once_problems(query(client), CLEAN, {0: (5, 60)}) == []


def test_a_topic_created_again_starts_its_offsets_afresh_and_every_record_lands(
    client: Client, settings: Settings
) -> None:
    first = ClickHouseSink(client, settings)
    first.start()
    first.assign(CLEAN, 0, committed=0, log_id="log-a")
    feed(first, [v for _, v in encoded_pings(3, 50, prefix="a")])
    first.seal_all()
    first.flush(CLEAN)  # 0..99 written and planned; 100..149 planned with it; then a crash
    # The topic is deleted and created again (or the broker's data wiped): the same offsets, other records.
    second = ClickHouseSink(client, settings)
    second.assign(CLEAN, 0, committed=0, log_id="log-b")
    feed(second, [v for _, v in encoded_pings(2, 60, prefix="b")])
    written = drain(second)
    assert [(f.next_offset, f.rows) for f in written] == [(100, 100), (120, 20)]
    assert scalar(client, "SELECT count() FROM gps_pings FINAL WHERE driver_id LIKE 'b%'") == 120
    assert scalar(client, "SELECT count() FROM gps_pings FINAL WHERE driver_id LIKE 'a%'") == 100


def test_negative_control_a_batch_written_twice_without_its_token_is_caught(
    client: Client, settings: Settings
) -> None:
    ClickHouseSink(client, settings).start()
    route = ROUTES_BY_TOPIC[CLEAN]
    staged = [route.stage(v, 0, i) for i, (_, v) in enumerate(encoded_pings(2, 20))]

    def write(rows: list[bytes], **insert_settings: int) -> None:
        file = container_file(route.file_schema, rows)
        client.raw_insert(route.staging, None, file, fmt="Avro", settings=insert_settings)

    write(staged)
    assert exactly_once_problems(query(client), CLEAN, {0: (0, 40)}) == []
    # A replay cut at other offsets and sent without a token: ClickHouse cannot know it is a replay.
    write(staged[25:])
    problems = exactly_once_problems(query(client), CLEAN, {0: (0, 40)})
    assert "sink_offsets p0: 15 offset(s) written more than once" in problems
    assert "gps_pings p0: 15 offset(s) written more than once" in problems
    # The same batch again with deduplication off (identical blocks would otherwise be caught by hash).
    write(staged, insert_deduplicate=0, deduplicate_blocks_in_dependent_materialized_views=0)
    problems = exactly_once_problems(query(client), CLEAN, {0: (0, 40)})
    assert "sink_offsets p0: 55 offset(s) written more than once" in problems


def test_a_row_clickhouse_refuses_is_dead_lettered_and_the_rest_lands(
    client: Client, settings: Settings
) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    encode = codec("CleanPing").encode
    values = [encode(clean_ping("d1", seq, lat=95.0 if seq == 37 else None)) for seq in range(60)]
    values[12] = b"not avro at all"
    feed(sink, values, partition=1)
    (flushed,) = drain(sink)
    assert flushed.next_offset == 60 and flushed.rows == 58
    assert sorted((d.offset, d.reason) for d in flushed.dead_letters) == [
        (12, "undecodable"),
        (37, "refused"),
    ]
    refused = next(d for d in flushed.dead_letters if d.reason == "refused")
    assert "lat_in_range" in refused.error and refused.value == values[37] and refused.partition == 1
    assert scalar(client, "SELECT count() FROM gps_pings") == 58
    assert scalar(client, "SELECT countIf(_offset IN (12, 37)) FROM gps_pings") == 0


def test_byte_identical_replays_of_a_ping_are_dropped_by_ping_id(client: Client, settings: Settings) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    values = [v for _, v in encoded_pings(2, 30)]
    feed(sink, values + values[50:])  # a worker crash re-emitted the last 10 pings
    drain(sink)
    assert scalar(client, "SELECT count() FROM gps_pings") == 60
    # The sink restarts after committing 70: the replays it meets next are recognised from ClickHouse.
    restarted = ClickHouseSink(client, settings)
    restarted.assign(CLEAN, 0, committed=70)
    feed(restarted, values[40:45], start=70)
    assert drain(restarted)[0].rows == 0
    assert scalar(client, "SELECT count() FROM gps_pings") == 60
    assert scalar(client, "SELECT sum(pings) FROM driver_daily_stats") == 60


def test_time_flush_seals_a_partial_batch(client: Client, settings: Settings) -> None:
    clock = FakeClock()
    sink = ClickHouseSink(client, settings, clock=clock)
    sink.start()
    feed(sink, [v for _, v in encoded_pings(1, 5)])
    assert sink.due() == [] and sink.buffered() == 5
    clock.now += settings.sink_flush_interval_s
    assert sink.due() == [CLEAN]
    assert sink.flush(CLEAN) != [] and sink.buffered() == 0


def test_records_added_in_runs_land_like_records_added_one_by_one(client: Client, settings: Settings) -> None:
    encode = codec("CleanPing").encode
    values: list[bytes | None] = [v for _, v in encoded_pings(3, 70)]
    values[7] = b"not avro at all"
    values[8] = None  # a tombstone
    values[40] = encode(clean_ping("d9", 1, lat=95.0))  # refused by ClickHouse
    values += values[150:160]  # replays of pings already added
    sink = ClickHouseSink(client, settings)
    sink.start()
    # Runs of uneven lengths across batch boundaries (batch size 100), as a consumer hands them over.
    cuts = [0, 1, 9, 99, 100, 101, 163, len(values)]
    for lo, hi in itertools.pairwise(cuts):
        sink.add_many(CLEAN, 0, list(range(lo, hi)), values[lo:hi])
    written = drain(sink)
    assert [f.next_offset for f in written] == [100, 200, 220]
    assert sorted((d.offset, d.reason) for f in written for d in f.dead_letters) == [
        (7, "undecodable"),
        (8, "undecodable"),
        (40, "refused"),
    ]
    assert scalar(client, "SELECT count() FROM gps_pings") == 210 - 3
    assert scalar(client, "SELECT countIf(_offset >= 210) FROM gps_pings") == 0  # the replays
    assert scalar(client, "SELECT (count(), uniqExact(offset), max(offset)) FROM sink_offsets") == (
        207,
        207,
        209,
    )


def test_replay_memory_keeps_at_least_its_capacity() -> None:
    recent = _RecentIds(4)
    ids = [f"p{i}".encode() for i in range(20)]
    for seen, record_id in enumerate(ids):
        assert not recent.check_and_add(record_id)
        # Every one of the last `capacity` ids is still known, whatever the generation swaps did.
        assert all(recent.check_and_add(earlier) for earlier in ids[max(0, seen - 3) : seen + 1])
    assert not recent.check_and_add(b"p0")  # long gone: forgetting keeps the memory bounded


def test_a_topics_partitions_seal_together_and_topics_reach_the_interval_at_different_moments(
    client: Client, settings: Settings
) -> None:
    clock = FakeClock()
    sink = ClickHouseSink(client, settings, clock=clock)
    values = [v for _, v in encoded_pings(1, 12)]
    other = topics.DELIVERIES_EVENTS
    sealed_at: dict[str, list[float]] = {CLEAN: [], other: []}
    for tick in range(40):  # four flush intervals, every partition getting records every 0.1 s
        clock.now = tick * settings.sink_flush_interval_s / 10
        for partition in range(6):
            sink.add(CLEAN, partition, tick, values[tick % 12])
            sink.add(other, partition, tick, b"an event")
        for topic in sink.due():
            parts = [part for (name, _), part in sink._partitions.items() if name == topic]
            # Every partition of the topic is sealed at once: one insert writes them all.
            assert all(part.open is None and len(part.sealed) == 1 for part in parts)
            sealed_at[topic].append(clock.now)
            for part in parts:
                part.sealed.clear()  # as if written
    assert all(len(times) in (3, 4) for times in sealed_at.values())
    # The two topics do not reach the interval at the same moment, so their inserts do not queue.
    assert sealed_at[CLEAN][0] != sealed_at[other][0]


def three_partitions_written_together(
    client: Client, settings: Settings, upto: int
) -> tuple[ClickHouseSink, list[Any]]:
    """A sink that has fed offsets 0..upto-1 of partitions 0..2 and flushed them in one insert (never
    committed); return it and the ping values."""
    first = ClickHouseSink(client, settings)
    first.start()
    values = [v for _, v in encoded_pings(2, 40)]
    for partition in range(3):
        feed(first, values[:upto], partition=partition)
    first.seal_all()
    written = first.flush(CLEAN)
    assert [(f.partition, f.next_offset, f.rows) for f in written] == [(p, upto, upto) for p in range(3)]
    return first, values


def test_one_flush_writes_every_partitions_batch_in_one_insert_and_a_replay_groups_them_again(
    client: Client, settings: Settings
) -> None:
    # One insert for the three partitions, then a crash before any commit.
    _, values = three_partitions_written_together(client, settings, 70)
    plan = client.query(
        "SELECT partition, first_offset, last_offset, group_token FROM sink_batch_plan ORDER BY partition"
    )
    group = f"{CLEAN}@:0:0-69,1:0-69,2:0-69"
    assert plan.result_rows == [(0, 0, 69, group), (1, 0, 69, group), (2, 0, 69, group)]
    # Restarted with another batch size, every partition is cut where the plan says and the three ranges
    # go in one insert under the same token again: ClickHouse drops it.
    second = ClickHouseSink(client, with_batch_size(settings, 30))
    for partition in range(3):
        second.assign(CLEAN, partition, committed=0)
    for partition in range(3):
        feed(second, values, partition=partition)
    assert [(f.partition, f.next_offset) for f in drain(second)] == [
        (0, 70),
        (1, 70),
        (2, 70),
        (0, 80),
        (1, 80),
        (2, 80),
    ]
    assert exactly_once_problems(query(client), CLEAN, {p: (0, 80) for p in range(3)}) == []


def test_a_group_whose_partitions_another_sink_owns_now_is_written_once_member_by_member(
    client: Client, settings: Settings
) -> None:
    first, values = three_partitions_written_together(client, settings, 50)
    for partition in range(3):
        feed(first, values[50:70], partition=partition, start=50)
    first.seal_all()
    first._plan_sealed()  # offsets 50..69 planned as a second group, then a crash before its insert
    # After a rebalance one sink owns partition 1, another 0 and 2: neither can write a group whole.
    alone = ClickHouseSink(client, settings)
    alone.assign(CLEAN, 1, committed=0)
    feed(alone, values[:70], partition=1)
    # The landed range is found in sink_offsets and skipped; the other is written alone.
    assert [(f.next_offset, f.rows) for f in drain(alone)] == [(50, 50), (70, 20)]
    rest = ClickHouseSink(client, settings)
    for partition in (0, 2):
        rest.assign(CLEAN, partition, committed=0)
        feed(rest, values[:70], partition=partition)
    drain(rest)
    assert exactly_once_problems(query(client), CLEAN, {p: (0, 70) for p in range(3)}) == []


def test_a_failure_reason_and_proof_land_and_names_and_addresses_do_not(
    client: Client, settings: Settings
) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    base = {"delivery_id": "dlv-7", "driver_id": "drv-7", "ts": 1_790_000_000_000, "source": "whatsapp"}
    assigned = {**base, "event_id": "e1", "type": "assigned", "pickup_lat": -23.5, "pickup_lon": -46.6,
                "dropoff_lat": -23.6, "dropoff_lon": -46.7, "customer_name": "Ana Souza",
                "pickup_address": "Rua A, 10", "dropoff_address": "Av. B, 200"}  # fmt: skip
    failed = {**base, "event_id": "e2", "type": "failed", "failure_reason": "not_home",
              "proof_ref": "location:-23.60000,-46.70000"}  # fmt: skip
    encode = codec("DeliveryEvent").encode
    for offset, event in enumerate((assigned, failed)):
        sink.add(topics.DELIVERIES_EVENTS, 0, offset, encode(event))
    drain(sink)
    rows = query(client)(
        "SELECT event_id, type, failure_reason, proof_ref FROM delivery_events ORDER BY event_id", {}
    )
    assert rows == [
        {"event_id": "e1", "type": "assigned", "failure_reason": None, "proof_ref": None},
        {"event_id": "e2", "type": "failed", "failure_reason": "not_home",
         "proof_ref": "location:-23.60000,-46.70000"},
    ]  # fmt: skip
    columns = {row[0] for row in client.query("DESCRIBE TABLE delivery_events").result_rows}
    assert not columns & {"customer_name", "pickup_address", "dropoff_address"}


def test_every_inbound_message_and_every_outbound_text_is_kept_for_the_audit(
    client: Client, settings: Settings
) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    inbound = {"message_id": "wamid.1", "provider": "meta", "from_hash": "f" * 32, "type": "image",
               "text": "entregue", "payload": '{"media_id": "meta:m1"}', "lat": None, "lon": None,
               "ts": 1_790_000_000_000, "received_ts": 1_790_000_000_500}  # fmt: skip
    outbound = {"message_key": "reply:meta:wamid.1", "to": "+5511987654321", "to_hash": "f" * 32,
                "template": None, "language": "pt_BR", "params": [], "text": "Anotado: pedido D-1 entregue.",
                "buttons": [], "reason": "reply_delivery_delivered", "driver_id": "d1", "delivery_id": "D-1",
                "created_at": 1_790_000_001_000}  # fmt: skip
    sink.add(topics.WHATSAPP_EVENTS_RAW, 0, 0, codec("WhatsAppEvent").encode(inbound))
    sink.add(topics.WHATSAPP_OUTBOUND, 0, 0, codec("OutboundMessage").encode(outbound))
    drain(sink)
    run = query(client)
    assert run("SELECT message_id, from_hash, type, text, payload FROM whatsapp_inbound", {}) == [
        {"message_id": "wamid.1", "from_hash": "f" * 32, "type": "image", "text": "entregue",
         "payload": '{"media_id": "meta:m1"}'}
    ]  # fmt: skip
    sent = run("SELECT message_key, to_hash, text, reason FROM whatsapp_messages", {})
    expected = {"message_key": "reply:meta:wamid.1", "to_hash": "f" * 32,
                "text": "Anotado: pedido D-1 entregue.", "reason": "reply_delivery_delivered"}  # fmt: skip
    assert sent == [expected]
    everything = str(client.query("SELECT * FROM whatsapp_messages").result_rows)
    assert "987654321" not in everything  # the clear number never reaches the analytics tables


def test_a_guardrail_hit_lands_for_the_audit_and_goes_with_the_drivers_erasure(
    client: Client, settings: Settings
) -> None:
    sink = ClickHouseSink(client, settings)
    sink.start()
    hit = {"event_id": "guard:meta:wamid.9:input:prompt_injection", "ts": 1_790_000_000_000,
           "driver_id": "d1", "from_hash": "f" * 32, "provider": "meta", "message_id": "wamid.9",
           "stage": "input", "reason": "prompt_injection", "grade": "block",
           "excerpt": "ignore previous instructions"}  # fmt: skip
    sink.add(topics.CONVERSATIONS_GUARDRAILS, 0, 0, codec("GuardrailEvent").encode(hit))
    drain(sink)
    run = query(client)
    landed = run("SELECT event_id, driver_id, stage, reason, grade, excerpt FROM guardrail_events", {})
    assert landed == [{k: hit[k] for k in ("event_id", "driver_id", "stage", "reason", "grade", "excerpt")}]
    assert scalar(client, "SELECT count() FROM sink_offsets WHERE topic = 'conversations.guardrails'") == 1
    for table, sql, params in erasure_statements({"driver_id": "d1", "phone_hashes": []}):
        if table == "guardrail_events":
            client.command(sql, parameters=params)
    assert scalar(client, "SELECT count() FROM guardrail_events") == 0
