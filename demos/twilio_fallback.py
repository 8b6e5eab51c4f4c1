"""The Twilio fallback's step of ``whatsup demo``: Meta fails, the circuit breaker opens, Twilio delivers.

The Meta sandbox is told to answer 131000 (transient) to the next sends, as many as it takes the breaker to
open (WHATSUP_SENDER_BREAKER_FAILURES). One message to a driver is then put on whatsapp.outbound: the sender
retries it against Meta with backoff until the breaker opens, then sends it through Twilio. What happened is
read back from the Twilio sandbox, from whatsapp.status and from the sender's circuit-state metric, and
checked.
"""

from __future__ import annotations

import re
import time
import uuid
from typing import Any
from urllib.parse import urlencode

import httpx
from confluent_kafka import Producer

from base import topics
from base.settings import Settings
from demos.harness import masked, phone_hash, read_statuses
from schemas.codecs import codec

DRIVER = "+5511955550080"
TIMEOUT_S = 90.0


def _circuit(settings: Settings) -> str:
    """Return the sender's Meta breaker state from its metrics (closed, half-open, open), or unknown."""
    try:
        text = httpx.get(f"http://127.0.0.1:{settings.sender_metrics_port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return "unknown"
    found = re.search(r'^whatsup_whatsapp_circuit_state\{provider="meta"\} (\S+)$', text, re.M)
    states = {"0.0": "closed", "1.0": "half-open", "2.0": "open"}
    return states.get(found.group(1), "unknown") if found else "unknown"


def show(settings: Settings, timeout_s: float = TIMEOUT_S) -> bool:
    """Make Meta fail until the breaker opens, and show (and check) a message going out through Twilio."""
    meta = settings.whatsapp_api_url.rstrip("/")
    twilio = settings.twilio_api_url.rstrip("/")
    try:
        httpx.get(f"{meta}/health", timeout=3).raise_for_status()
        httpx.get(f"{twilio}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print("\nWhatsApp Twilio fallback: the sender talks to real APIs, nothing to inject")
        return True
    if not (settings.twilio_account_sid and settings.twilio_auth_token and settings.twilio_from):
        print("\nWhatsApp Twilio fallback: WHATSUP_TWILIO_* is not set, the sender has no fallback to show")
        return True
    failures = settings.sender_breaker_failures
    fault = {"code": 131000, "times": failures}
    httpx.post(f"{meta}/_sandbox/faults", json=fault, timeout=5).raise_for_status()
    run = f"demo{uuid.uuid4().hex[:6]}"
    key = f"{run}:breaker:driver-8"
    record: dict[str, Any] = {
        "message_key": key,
        "to": DRIVER,
        "to_hash": phone_hash(settings, DRIVER),
        "text": "Sua próxima coleta está pronta no balcão 3.",
        "reason": "demo",
        "driver_id": "driver-8",
        "created_at": int(time.time() * 1000),
    }
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
    producer.produce(outbound, codec("OutboundMessage").encode(record), record["to_hash"].encode())
    producer.flush(10)
    print(f"\nWhatsApp Twilio fallback: Meta answers 131000 to the next {failures} sends, then a message ...")

    def sent_anywhere(found: list[dict[str, object]]) -> bool:
        return any(r["status"] == "sent" and r["message_key"] == key for r in found)

    statuses = read_statuses(settings, topics.WHATSAPP_STATUS, run, sent_anywhere, timeout_s)
    attempts = [
        f"{r['provider']}:{r['status']}" + (f"({r['error_code']})" if r["error_code"] else "")
        for r in statuses
        if r["message_key"] == key
    ]
    print(f"  attempts on whatsapp.status: {' -> '.join(attempts) or 'none'}")
    breaker = _circuit(settings)
    print(f"  the sender's Meta circuit breaker: {breaker}")
    log = httpx.get(f"{twilio}/_sandbox/messages", timeout=5).json()["messages"]

    # The key rides in the status callback URL when one is set; otherwise the message is told by its text.
    def ours(m: dict[str, Any]) -> bool:
        form = m["form"]
        if "StatusCallback" in form:
            return urlencode({"message_key": key}) in str(form["StatusCallback"])
        return bool(m["to"] == DRIVER and form.get("Body") == record["text"])

    landed = [m for m in log if ours(m)]
    for m in landed:
        print(f"  the Twilio sandbox received: to {masked(m['to'])}  body {m['form'].get('Body', '')!r}")
    meta_log = httpx.get(f"{meta}/_sandbox/messages", timeout=5).json()["messages"]
    ok = (
        len(landed) == 1
        and attempts.count("meta:queued(131000)") >= 1
        and "twilio:sent" in attempts
        and "meta:sent" not in attempts
        and not any(m.get("biz_opaque_callback_data") == key for m in meta_log)
        and breaker in ("open", "half-open")
    )
    if ok:
        print("  checked: Meta failed, the breaker opened, the message reached Twilio once and Meta never")
    else:
        print("  MISMATCH against the expected outcomes")
    return ok
