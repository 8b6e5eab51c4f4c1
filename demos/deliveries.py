"""Demo step for delivery tracking: events with API keys, a scripted stall becoming one alert, the dispatcher
API's answer and its refusals, and a late upload of an old stop that pages nobody.

The stall is scripted in event time: a phone that rode for a minute and has stood still for the last seven
uploads that track now, so the worker judges windows that closed moments ago and pages at once.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.apikeys import POST_EVENTS, READ_DRIVERS
from base.settings import Settings
from base.tokens import issue_driver_token
from schemas.codecs import codec
from streams.deliveries.stall import M_PER_DEG_LAT

MIN = 60_000


def _key(settings: Settings, roles: frozenset[str], avoid: frozenset[str] = frozenset()) -> str | None:
    return next((k for k, r in settings.api_keys.items() if r & roles and not r & avoid), None)


def track(start_ms: int, ride_min: float, stand_min: float, lat: float, lon: float) -> list[dict[str, Any]]:
    """Return pings every 5 s: riding north at 8 m/s, then standing still (with 4 m of GPS jitter)."""
    pings, ts, end = [], start_ms, start_ms + int((ride_min + stand_min) * MIN)
    while ts <= end:
        riding = min(ts - start_ms, int(ride_min * MIN)) / 1000 * 8.0
        jitter = 4.0 * ((ts // 5000) % 3 - 1) if ts - start_ms > ride_min * MIN else 0.0
        pings.append({"ts": ts, "lat": lat + (riding + jitter) / M_PER_DEG_LAT, "lon": lon, "accuracy_m": 6})
        ts += 5_000
    return pings


def _post_pings(url: str, secret: str, driver: str, pings: list[dict[str, Any]]) -> None:
    token = issue_driver_token(secret, driver, ttl_s=3600)
    numbered = [{**p, "ping_id": f"{driver}:{i}", "seq": i} for i, p in enumerate(pings)]
    auth = {"Authorization": f"Bearer {token}"}
    answer = httpx.post(f"{url}/v1/pings", json={"pings": numbered}, timeout=30, headers=auth)
    answer.raise_for_status()


def _events(driver: str, delivery: str, at: int, lat: float, lon: float) -> dict[str, Any]:
    common = {"delivery_id": delivery, "driver_id": driver, "ts": at}
    assigned = {
        **common,
        "event_id": f"{delivery}-1",
        "type": "assigned",
        "pickup_lat": lat - 0.02,
        "pickup_lon": lon,
        "dropoff_lat": lat + 0.05,
        "dropoff_lon": lon,
        # Ten minutes for about 6 km of road: a rider who stops for seven puts the promise at risk.
        "promised_at": at + 10 * MIN,
        "customer_ref": "cust-demo",
    }
    return {"events": [assigned, {**common, "event_id": f"{delivery}-2", "type": "picked_up"}]}


def read_records(
    settings: Settings, name: str, schema: str, keys: set[str], enough: int, wait_s: float
) -> list[dict[str, Any]]:
    """Read a topic from the start, keeping the records keyed by ``keys``, until ``enough`` or ``wait_s``."""
    topic = topics.qualified(name, settings.topic_prefix)
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"demo-{time.monotonic_ns()}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    decode = codec(schema).decode
    found: list[dict[str, Any]] = []
    deadline = time.monotonic() + wait_s
    try:
        while len(found) < enough and time.monotonic() < deadline:
            for message in consumer.consume(500, timeout=0.2):
                if message.error() is None and (message.key() or b"").decode(errors="replace") in keys:
                    found.append(decode(message.value() or b""))
    finally:
        consumer.close()
    return found


def _post(url: str, path: str, key: str | None, body: Any) -> httpx.Response:
    return httpx.post(f"{url}{path}", json=body, timeout=30, headers={"X-API-Key": key} if key else {})


def _show_refusals(url: str, dispatcher: str, ingest_only: str, driver: str) -> bool:
    ok = True
    body = _events(driver, "x", int(time.time() * 1000), -23.55, -46.63)
    cases = (
        ("POST events, no key", lambda: _post(url, "/v1/deliveries/events", None, body), 401),
        ("POST events, dispatcher key", lambda: _post(url, "/v1/deliveries/events", dispatcher, body), 403),
        (
            "GET driver, ingest-only key",
            lambda: httpx.get(f"{url}/v1/drivers/{driver}", headers={"X-API-Key": ingest_only}, timeout=10),
            403,
        ),
    )
    for label, call, expected in cases:
        answer = call()
        ok &= answer.status_code == expected
        print(f"  {label:<30} -> {answer.status_code} {answer.json()['error']}")
    return ok


def show(settings: Settings) -> bool:
    """Run the delivery demo against a running worker; return True when every answer matched."""
    ingest = _key(settings, POST_EVENTS)
    dispatcher = _key(settings, READ_DRIVERS)
    ingest_only = _key(settings, POST_EVENTS, avoid=READ_DRIVERS)
    if not (ingest and dispatcher and ingest_only and settings.token_secret):
        print("delivery demo needs WHATSUP_API_KEYS (ingest and dispatcher keys) and WHATSUP_TOKEN_SECRET")
        return False
    url, run, now = f"http://127.0.0.1:{settings.web_port}", uuid.uuid4().hex[:4], int(time.time() * 1000)
    stalled, late = f"demo-{run}-stalled", f"demo-{run}-late"
    lat, lon = -23.55, -46.63

    print("\nDelivery events and the dispatcher API refuse keys without the role:")
    ok = _show_refusals(url, dispatcher, ingest_only, stalled)
    print("\nDelivery events posted with an ingest key (two drivers, each picks up an order):")
    for driver, delivery, start in (
        (stalled, f"d{run}-1", now - 8 * MIN),
        (late, f"d{run}-2", now - 70 * MIN),
    ):
        answer = _post(url, "/v1/deliveries/events", ingest, _events(driver, delivery, start, lat, lon))
        ok &= answer.status_code == 202
        print(f"  {delivery}: {answer.status_code} {answer.json()}")
    again = _events(stalled, f"d{run}-1", now, lat, lon)["events"][0] | {"event_id": f"d{run}-1-again"}
    ok &= _post(url, "/v1/deliveries/events", ingest, again).status_code == 202
    print(f"  d{run}-1 assigned a second time: 202 (well-formed); the state machine will dead-letter it")

    print(
        "\nOne phone rode a minute and has stood still for seven; another uploads an old stop an hour late:"
    )
    _post_pings(url, settings.token_secret, stalled, track(now - 8 * MIN, 1, 7, lat, lon))
    _post_pings(url, settings.token_secret, late, track(now - 70 * MIN, 1, 8, lat, lon))
    # Read until a fourth alert shows up or 20 s pass: exactly three are expected.
    alerts = read_records(settings, topics.ALERTS, "Alert", {stalled, late}, 4, wait_s=20)
    for alert in alerts:
        since = alert["started_at"]
        print(f"  alert {alert['kind']} {alert['alert_id']} driver {alert['driver_id']}, since {since}")
    # The stop and the promise it puts at risk; for the hour-old upload no stall, but its driver has been
    # silent for an hour on an active delivery: offline.
    expected = [("late_risk", stalled), ("offline", late), ("stall", stalled)]
    got = sorted((a["kind"], a["driver_id"]) for a in alerts)
    stall_since = [a["started_at"] for a in alerts if a["kind"] == "stall"]
    # The stop began 7 min ago; the last 200 m of riding fit in the 100 m circle too (25 s at 8 m/s).
    ok &= got == expected and now - 7 * MIN - 30_000 <= stall_since[0] <= now - 6 * MIN
    print(f"  expected exactly {expected}: {'yes' if got == expected else f'NO, got {got}'}")
    [dead] = read_records(
        settings, topics.DELIVERIES_REJECTED, "RejectedDeliveryEvent", {stalled}, 1, 20
    ) or [{}]
    print(f"  dead letter on deliveries.rejected: {dead.get('reason')} ({dead.get('detail')})")
    ok &= dead.get("reason") == "already_assigned"

    etas = read_records(settings, topics.DELIVERIES_ETA, "EtaUpdate", {stalled}, 99, wait_s=3)
    print(f"\nETAs the worker published on deliveries.eta for d{run}-1 (seconds from now):")
    for eta in etas:
        at, arrives = (eta["computed_at"] - now) / 1000, (eta["eta"] - now) / 1000
        promised = (eta["promised_at"] - now) / 1000
        print(f"  at {at:+5.0f} s: arrives {arrives:+5.0f} s ({eta['method']}; promised {promised:+.0f} s)")
    ok &= bool(etas)

    answer = httpx.get(f"{url}/v1/drivers/{stalled}", headers={"X-API-Key": dispatcher}, timeout=10)
    body = answer.json()
    print(f"\nGET /v1/drivers/{stalled} (dispatcher key) -> {answer.status_code}")
    print(f"  status {body.get('status')}, last fix {body.get('last_fix')}")
    print(f"  open alerts {body.get('open_alerts')}")
    ok &= answer.status_code == 200 and body.get("status") == "stalled"
    return bool(ok)
