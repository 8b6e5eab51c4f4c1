"""Versioned SQL migrations (``sinks/migrations/NNNN_name.sql``), applied once each and recorded.

``apply_migrations`` runs at every sink start and from ``whatsup migrate``: a file whose version is in
``schema_migrations`` is skipped (its checksum must not have changed), the others run statement by
statement (each ``IF NOT EXISTS``, so a run cut short can simply run again) and are then recorded.
Retention is not in the files: ``apply_retention`` sets each table's TTL from the settings at every start.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from clickhouse_connect.driver.client import Client

from base.exceptions import SettingsError
from base.settings import Settings

MIGRATIONS_DIR = Path(__file__).parent / "migrations"

# Table -> the event-time column its TTL counts from; retention_days unless WHATSUP_SINK_RETENTION says.
RETENTION_COLUMNS = {
    "gps_pings": "device_ts",
    "gps_pings_rejected": "rejected_ts",
    "delivery_events": "ts",
    "eta_updates": "computed_at",
    "alerts": "started_at",
    "whatsapp_messages": "ts",
    "whatsapp_inbound": "ts",
    "guardrail_events": "ts",
    "api_access_log": "ts",
    "alert_actions": "ts",
    "driver_daily_stats": "day",
    "cell_speed_hourly": "hour",
    "sink_offsets": "inserted_at",
    "sink_batch_plan": "written_at",
}

_CREATE_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations
(version UInt32, name String, checksum String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3))
ENGINE = ReplacingMergeTree ORDER BY version
"""


@dataclass(frozen=True)
class Migration:
    """One SQL file: its version, name, statements and checksum."""

    version: int
    name: str
    statements: tuple[str, ...]
    checksum: str


def split_statements(sql: str) -> tuple[str, ...]:
    """Split a migration file into statements, dropping ``--`` comment lines."""
    lines = [line for line in sql.splitlines() if not line.lstrip().startswith("--")]
    return tuple(s.strip() for s in "\n".join(lines).split(";") if s.strip())


def load_migrations(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    """Read every ``NNNN_name.sql`` in version order; versions must be unique."""
    migrations: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = re.fullmatch(r"(\d{4})_(\w+)\.sql", path.name)
        if match is None:
            raise SettingsError(f"migration file {path.name} is not named NNNN_name.sql")
        version = int(match.group(1))
        if version in migrations:
            raise SettingsError(f"two migrations have version {version}")
        text = path.read_text(encoding="utf-8")
        checksum = hashlib.sha256(text.encode()).hexdigest()[:16]
        migrations[version] = Migration(version, match.group(2), split_statements(text), checksum)
    return [migrations[v] for v in sorted(migrations)]


def applied_migrations(client: Client) -> dict[int, str]:
    """Return the recorded migrations, version -> checksum."""
    client.command(_CREATE_MIGRATIONS)
    rows = client.query(
        "SELECT version, argMax(checksum, applied_at) FROM schema_migrations GROUP BY version"
    )
    return {int(version): str(checksum) for version, checksum in rows.result_rows}


def apply_migrations(client: Client, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply every migration not yet recorded; return the names applied (empty when up to date)."""
    done = applied_migrations(client)
    applied = []
    for migration in load_migrations(directory):
        if migration.version in done:
            if done[migration.version] != migration.checksum:
                raise SettingsError(
                    f"migration {migration.version:04d}_{migration.name} changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        for statement in migration.statements:
            client.command(statement)
        client.insert(
            "schema_migrations",
            [[migration.version, migration.name, migration.checksum]],
            column_names=["version", "name", "checksum"],
        )
        applied.append(f"{migration.version:04d}_{migration.name}")
    return applied


def retention_days(settings: Settings) -> dict[str, int]:
    """Return the retention in days of every table, from the settings."""
    unknown = sorted(set(settings.sink_retention) - set(RETENTION_COLUMNS))
    if unknown:
        raise SettingsError(
            f"WHATSUP_SINK_RETENTION names unknown table(s) {', '.join(unknown)}; "
            f"known: {', '.join(RETENTION_COLUMNS)}"
        )
    return {table: settings.sink_retention.get(table, settings.retention_days) for table in RETENTION_COLUMNS}


def apply_retention(client: Client, settings: Settings) -> dict[str, int]:
    """Set each table's TTL to its retention (only where it differs); return the days per table."""
    wanted = retention_days(settings)
    engines: dict[str, str] = {
        str(name): str(engine)
        for name, engine in client.query(
            "SELECT name, engine_full FROM system.tables WHERE database = currentDatabase()"
        ).result_rows
    }
    for table, days in wanted.items():
        column = RETENTION_COLUMNS[table]
        if f"toIntervalDay({days})" in str(engines.get(table, "")):
            continue
        # Old parts keep their rows until their next merge rather than being rewritten all at once.
        client.command(
            f"ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY",
            settings={"materialize_ttl_after_modify": 0},
        )
    return wanted
