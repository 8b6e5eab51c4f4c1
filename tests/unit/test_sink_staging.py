"""The sink's pure parts: Avro staging without decoding, error classification, migration files, retention."""

from __future__ import annotations

import io

import pytest
from clickhouse_connect.driver.exceptions import DatabaseError, DataError, OperationalError
from fastavro import reader
from hypothesis import given
from hypothesis import strategies as st

from base import topics
from base.exceptions import SchemaError, SettingsError
from base.settings import Settings
from schemas.codecs import codec
from sinks.clickhouse import is_refusal
from sinks.migrate import load_migrations, retention_days, split_statements
from sinks.staging import ROUTES, ROUTES_BY_TOPIC, container_file, kafka_position, read_long, zigzag
from tests.sink_records import clean_ping


@given(st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_zigzag_round_trips_every_long(value: int) -> None:
    encoded = zigzag(value)
    assert read_long(encoded + b"tail", 0) == (value, len(encoded))


def test_staged_rows_are_the_record_plus_partition_and_offset() -> None:
    route = ROUTES_BY_TOPIC[topics.GPS_PINGS_CLEAN]
    pings = [clean_ping("d1", seq) for seq in range(3)]
    staged = [route.stage(codec("CleanPing").encode(p), 5, 100 + i) for i, p in enumerate(pings)]
    rows = list(reader(io.BytesIO(container_file(route.file_schema, staged))))
    assert [r["ping_id"] for r in rows] == ["d1:0", "d1:1", "d1:2"]
    assert [r["_kafka"] for r in rows] == [kafka_position(5, 100 + i) for i in range(3)]
    assert kafka_position(5, 100) == b"\x05\x00" + b"\x64" + b"\x00" * 7
    assert rows[1]["lat"] == pings[1]["lat"] and rows[1]["h3_r9"] == pings[1]["h3_r9"]
    assert route.record_id(staged[2]) == b"d1:2"


def test_rejected_pings_are_flattened() -> None:
    route = ROUTES_BY_TOPIC[topics.GPS_PINGS_REJECTED]
    gps = {
        k: clean_ping("d1", 1)[k]
        for k in ("ping_id", "driver_id", "device_ts", "lat", "lon", "accuracy_m", "source", "received_ts")
    }
    value = codec("RejectedPing").encode(
        {
            "reason": "null_island",
            "detail": "",
            "driver_id": "d1",
            "ping_id": "d1:1",
            "ping": gps,
            "rejected_ts": 7,
            "source_topic": "gps.pings.raw",
            "source_partition": 2,
            "source_offset": 9,
        }
    )
    staged = route.stage(value, 2, 40)
    (row,) = reader(io.BytesIO(container_file(route.file_schema, [staged])))
    assert (
        row["reason"] == "null_island" and row["lat"] == gps["lat"] and row["device_ts"] == gps["device_ts"]
    )
    assert (row["source_offset"], row["_kafka"], row["raw_payload"]) == (9, kafka_position(2, 40), None)


def test_bytes_that_are_not_avro_are_refused_with_a_reason() -> None:
    route = ROUTES_BY_TOPIC[topics.ALERTS]
    with pytest.raises(SchemaError) as caught:
        route.stage(b'{"json": true}', 0, 0)
    assert caught.value.reason == "undecodable"
    with pytest.raises(SchemaError):  # right magic, unknown writer schema
        route.stage(b"\xc3\x01" + b"\x00" * 8 + b"body", 0, 0)


def test_every_route_has_a_staging_table_in_the_migrations() -> None:
    sql = " ".join(s for m in load_migrations() for s in m.statements)
    for route in ROUTES:
        assert f"CREATE TABLE IF NOT EXISTS {route.staging}" in sql
        assert f"TO {route.table} AS" in sql
    # the clear phone number of whatsapp.outbound has no column to land in
    staging = sql.split("CREATE TABLE IF NOT EXISTS in_whatsapp_outbound")[1].split("ENGINE")[0]
    assert " to " not in staging.replace("\n", " ") and "to_hash" in staging


def test_refusals_are_told_apart_from_outages() -> None:
    assert is_refusal(DataError("Unable to create native array for column `v`"))
    assert is_refusal(DatabaseError("Code: 469. DB::Exception: Constraint `lat_in_range` ... violated"))
    assert not is_refusal(DatabaseError("Code: 252. DB::Exception: Too many parts (TOO_MANY_PARTS)"))
    assert not is_refusal(OperationalError("Error HTTPConnectionPool(host='x', port=8123): refused"))
    assert not is_refusal(RuntimeError("anything else"))


def test_split_statements_drops_comments() -> None:
    sql = "-- a comment; with a semicolon\nCREATE TABLE a (x Int8) ENGINE = Memory;\n\n-- more\nSELECT 1;\n"
    assert split_statements(sql) == ("CREATE TABLE a (x Int8) ENGINE = Memory", "SELECT 1")


def test_retention_comes_from_settings_with_per_table_overrides() -> None:
    days = retention_days(Settings.from_env({"WHATSUP_SINK_RETENTION": "api_access_log=365, alerts=30"}))
    assert days["gps_pings"] == 90 and days["api_access_log"] == 365 and days["alerts"] == 30
    with pytest.raises(SettingsError, match="unknown table"):
        retention_days(Settings.from_env({"WHATSUP_SINK_RETENTION": "gps_pingz=3"}))
    with pytest.raises(SettingsError, match="WHATSUP_SINK_RETENTION"):
        Settings.from_env({"WHATSUP_SINK_RETENTION": "alerts=-1"})
