"""The sink's erasure plan: every table that names a driver, a phone hash or a customer is in it, and a
request's deletes run on the real engine (chDB), touch only the person and leave one audit row."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from clickhouse_connect.driver.client import Client

from base.settings import Settings
from sinks.engine import make_client
from sinks.erasure import CUSTOMER_COLUMNS, DRIVER_COLUMNS, PHONE_COLUMNS, erase, statements
from sinks.migrate import apply_migrations


@pytest.fixture()
def client(tmp_path: Path) -> Iterator[Client]:
    client = make_client(Settings.from_env({"WHATSUP_CLICKHOUSE_URL": f"chdb://{tmp_path / 'ch'}"}))
    apply_migrations(client)
    try:
        yield client
    finally:
        client.close()


def request(**fields: Any) -> dict[str, Any]:
    return {
        "erasure_id": "e1",
        "subject_hash": "s" * 32,
        "driver_id": None,
        "phone_hashes": [],
        "customer_refs": [],
        "requested_at": 1_700_000_000_000,
        "requested_by": "dpo",
        "reason": "",
        **fields,
    }


def test_every_table_naming_a_person_is_in_the_plan(client: Client) -> None:
    # A new table with a driver_id, to_hash, from_hash or customer_ref column must join the plan, or erasure
    # misses it.
    stored = client.query(
        "SELECT c.table, c.name FROM system.columns AS c INNER JOIN system.tables AS t"
        " ON t.database = c.database AND t.name = c.table"
        " WHERE c.database = currentDatabase() AND t.engine LIKE '%MergeTree'"
        " AND c.name IN ('driver_id', 'to_hash', 'from_hash', 'customer_ref')"
    ).result_rows
    planned = {*DRIVER_COLUMNS, *PHONE_COLUMNS, *CUSTOMER_COLUMNS}
    assert {(str(table), str(column)) for table, column in stored} == planned


def test_statements_follow_the_request() -> None:
    assert statements(request()) == []
    driver = statements(request(driver_id="d1"))
    assert [table for table, _, _ in driver] == [table for table, _ in DRIVER_COLUMNS]
    assert all(
        "DELETE WHERE driver_id = {v:String}" in sql and params == {"v": "d1"} for _, sql, params in driver
    )
    [(table, sql, params)] = statements(request(customer_refs=["c1"]))
    assert (table, params) == ("delivery_events", {"v": "c1"}) and "UPDATE customer_ref = NULL" in sql


def test_erase_takes_the_person_keeps_the_rest_and_audits_once(client: Client) -> None:
    now = datetime.now(tz=UTC)
    rows = [["d1", "p1", now, 1.0, 2.0], ["d2", "p2", now, 1.0, 2.0]]
    client.insert("gps_pings", rows, column_names=["driver_id", "ping_id", "device_ts", "lat", "lon"])
    events = [["e1", "x1", "d2", "assigned", now, "c1"], ["e2", "x2", "d2", "assigned", now, "c2"]]
    client.insert(
        "delivery_events",
        events,
        column_names=["event_id", "delivery_id", "driver_id", "type", "ts", "customer_ref"],
    )
    touched = erase(client, request(driver_id="d1", customer_refs=["c1"]))
    assert touched[0] == "gps_pings" and "delivery_events" in touched
    assert client.query("SELECT driver_id FROM gps_pings").result_rows == [("d2",)]
    refs = client.query("SELECT event_id, customer_ref FROM delivery_events ORDER BY event_id").result_rows
    assert refs == [("e1", None), ("e2", "c2")]
    erase(client, request(driver_id="d1", customer_refs=["c1"]))  # the same request again
    audit = client.query("SELECT erasure_id, subject_hash FROM erasures FINAL").result_rows
    assert audit == [("e1", "s" * 32)]
