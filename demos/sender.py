"""The sender's step of the demo: a few messages through the sender and the Meta sandbox.

One stall check with quick-reply buttons, the same message again (its key is claimed: not sent twice), a
customer ETA text to a number whose 24-hour window is closed (131047, sent as the template instead), and a
message to a number that cannot receive it (131026, dead-lettered with the code). Every outcome is read
back from the sandbox and from Kafka and checked.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter, defaultdict
from typing import Any

import httpx
from confluent_kafka import Producer

from base import topics
from base.settings import Settings
from connectors.whatsapp import status
from demos.harness import Records, masked, phone_hash, read_statuses
from schemas.codecs import codec

STALL, DUPLICATE_OF, LATE, GONE = "+5511955550001", "+5511955550001", "+5511955550047", "+5511955550026"


def _messages(settings: Settings, run: str) -> list[dict[str, Any]]:
    now = int(time.time() * 1000)

    def message(key: str, to: str, **fields: Any) -> dict[str, Any]:
        return {
            "message_key": f"{run}:{key}",
            "to": to,
            "to_hash": phone_hash(settings, to),
            "created_at": now,
            **fields,
        }

    stall = message(
        "stall_check:driver-7:alert-1",
        STALL,
        text="Você está parado há 6 minutos. Está tudo bem?",
        buttons=["Cheguei", "Trânsito", "Pane"],
        reason="stall_check",
        driver_id="driver-7",
    )
    return [
        stall,
        dict(stall),  # the notify agent re-emitted it after a restart: same key
        message(
            "eta_update:delivery-42:3",
            LATE,
            text="Seu pedido chega às 12:40.",
            template="eta_update",
            params=["delivery-42", "12:40", "https://track.example/t/x"],
            reason="eta_update",
            delivery_id="delivery-42",
        ),
        message(
            "delivered:delivery-43",
            GONE,
            text="Pedido entregue!",
            reason="delivered",
            delivery_id="delivery-43",
        ),
    ]


def _then(seen: list[str], first: str, later: str) -> bool:
    return first in seen and later in seen[seen.index(first) :]


def show(settings: Settings, timeout_s: float = 60.0) -> bool:
    """Send the demo messages through the running sender and sandbox; print and check what happened."""
    sandbox = settings.whatsapp_api_url.rstrip("/")
    try:
        httpx.get(f"{sandbox}/health", timeout=3).raise_for_status()
    except httpx.HTTPError:
        print(
            f"WhatsApp: {sandbox} is not the local sandbox; the sender talks to the real API, nothing to show"
        )
        return True
    run = f"demo{uuid.uuid4().hex[:6]}"
    httpx.post(f"{sandbox}/_sandbox/recipients", json={"to": LATE, "window_open": False}, timeout=5)
    httpx.post(f"{sandbox}/_sandbox/recipients", json={"to": GONE, "deliverable": False}, timeout=5)
    producer = Producer({"bootstrap.servers": settings.kafka_bootstrap, "acks": "all"})
    outbound = topics.qualified(topics.WHATSAPP_OUTBOUND, settings.topic_prefix)
    for message in _messages(settings, run):
        producer.produce(outbound, codec("OutboundMessage").encode(message), message["to_hash"].encode())
    producer.flush(10)
    print("\nWhatsApp sender: 4 OutboundMessages on whatsapp.outbound (one a duplicate key) ...")
    # The sender's statuses: stall sent (and sent again for its duplicate), ETA queued (131047) then sent
    # as the template, the undeliverable one failed. Callback statuses from the webhook may come in between.
    expected = {"sent": 3, "queued": 1, "failed": 1}

    def sender_done(found: Records) -> bool:
        kinds = Counter(r["status"] for r in found)
        return all(kinds[k] >= n for k, n in expected.items())

    statuses = read_statuses(settings, topics.WHATSAPP_STATUS, run, sender_done, timeout_s)
    dead = read_statuses(settings, topics.WHATSAPP_OUTBOUND_DEAD, run, lambda found: len(found) >= 1, 10)
    log = httpx.get(f"{sandbox}/_sandbox/messages", timeout=5).json()["messages"]
    received = [m for m in log if str(m.get("biz_opaque_callback_data", "")).startswith(run)]
    print("  the Meta sandbox received:")
    for m in received:
        print(
            f"    {m['type']:<12} to {masked(m['to'])}  key {m['biz_opaque_callback_data'].split(':', 1)[1]}"
        )
    by_key: dict[str, list[str]] = defaultdict(list)
    for s in statuses:
        by_key[s["message_key"]].append(s["status"] + (f"({s['error_code']})" if s["error_code"] else ""))
    # Status callbacks, once the worker's webhook maps them, add sent/delivered/read in any order:
    # the message's status only moves forward.
    print("  statuses on whatsapp.status, in arrival order, and where each message stands:")
    for key, seen in by_key.items():
        final = status.fold(s.split("(")[0] for s in seen)
        print(f"    {key.split(':', 1)[1]:<32} {' -> '.join(seen):<40} now {final}")
    for d in dead:
        key = d["message_key"].split(":", 1)[1]
        print(f"  dead-lettered: {key} with code {d['error_code']} ({d['error_title']})")
    kinds = sorted((m["type"], m["biz_opaque_callback_data"].split(":", 2)[1]) for m in received)
    ok = (
        kinds == [("interactive", "stall_check"), ("template", "eta_update")]
        and _then(by_key.get(f"{run}:eta_update:delivery-42:3", []), "queued(131047)", "sent")
        and [d["error_code"] for d in dead] == [131026]
    )
    if ok:
        print("  checked: the duplicate not sent, 131047 fell back to the template, 131026 dead-lettered")
    else:
        print("  MISMATCH against the expected outcomes")
    return ok
