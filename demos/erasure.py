"""Demo step: one driver of the demo's fleet erased under the LGPD with ``whatsup erase``'s own steps, and
what ClickHouse, the worker and the audit show before and after."""

from __future__ import annotations

import asyncio
import time

import httpx

from base.apikeys import READ_DRIVERS
from base.exceptions import StackError
from base.settings import Settings
from sinks.query import run_query
from streams.erase import erase_redis, publish, request_record, resolve, wait_applied

ROWS = "SELECT count() AS n FROM {table} WHERE driver_id = {{d:String}}"
TABLES = ("gps_pings", "gps_pings_rejected", "alerts", "driver_daily_stats")


def _rows(settings: Settings, driver: str) -> dict[str, int]:
    return {t: int(run_query(settings, ROWS.format(table=t), {"d": driver})[0]["n"]) for t in TABLES}


def _state(settings: Settings, driver: str) -> int:
    key = next((key for key, roles in settings.api_keys.items() if roles & READ_DRIVERS), "")
    url = f"http://127.0.0.1:{settings.web_port}/v1/drivers/{driver}"
    return httpx.get(url, headers={"X-API-Key": key}, timeout=10).status_code


def show(settings: Settings, driver_prefix: str) -> bool:
    """Erase the demo fleet's busiest driver; True if nothing of them is left and the audit row is there."""
    print("\nLGPD erasure (`whatsup erase --driver ID --requested-by NAME --wait 60`):")
    try:
        top = run_query(
            settings,
            "SELECT driver_id FROM gps_pings WHERE startsWith(driver_id, {p:String})"
            " GROUP BY driver_id ORDER BY count() DESC, driver_id LIMIT 1",
            {"p": driver_prefix},
        )
        driver = str(top[0]["driver_id"])
        before = _rows(settings, driver)
        subject = asyncio.run(resolve(settings, driver, None))
        record = request_record(subject, "demo-dpo", "demo request", int(time.time() * 1000))
        asyncio.run(erase_redis(settings, subject))
        publish(settings, record)
        applied = wait_applied(settings, record["erasure_id"], 60)
        after = _rows(settings, driver)
        # The worker applies the request on its own; this read is audited in api_access_log, as every read is.
        deadline = time.monotonic() + 30
        while (state_after := _state(settings, driver)) != 404 and time.monotonic() < deadline:
            time.sleep(0.5)
        audit = run_query(
            settings,
            "SELECT subject_hash, requested_by, tables FROM erasures WHERE erasure_id = {e:String}",
            {"e": record["erasure_id"]},
        )
    except (StackError, IndexError, httpx.HTTPError) as exc:
        print(f"  failed: {exc}")
        return False
    print(f"  driver {driver}: rows before {before}")
    print(f"  after: rows {after}; the dispatcher API answers {state_after} for the driver")
    if audit:
        row = audit[0]
        print(f"  audit: subject {row['subject_hash']} (a keyed hash), by {row['requested_by']}")
        print(f"  tables: {', '.join(row['tables'])}")
    ok = applied and not any(after.values()) and state_after == 404 and len(audit) == 1
    print("  nothing of the driver is left; the erasure is audited" if ok else "  the erasure is incomplete")
    return ok
