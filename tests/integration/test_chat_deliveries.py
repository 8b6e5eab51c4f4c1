"""A delivery driven purely by chat, on a real worker, ingest process, broker and Redis.

An assignment from the order system is offered to its driver with Accept and Decline buttons; the driver
accepts by button, picks up by text, says the delivery failed and picks the reason by answering "1"; each
step goes through the worker's own state machine (read back through its dispatcher API), dispatch gets the
failure as an alert, and stale numbers or unknown buttons are refused without changing anything. The
customer hears of the pickup and the departure (with the ETA) in their language with a tracking link, the
link shows the ETA the worker published, and after STOP nothing more reaches them.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from base import topics
from base.kafka import DeliveringProducer, create_topics
from base.settings import Settings
from connectors.sandbox.run import llm_in_thread
from connectors.whatsapp.signatures import meta_signature
from demos import chat as chat_demo
from loadtest.processes import Process, free_port
from schemas.codecs import codec
from tests.integration.stack import ROOT, Record, WorkerProcess, read_topic, wait_until
from tests.whatsapp_payloads import DRIVER_PHONE, body_of, meta_message, meta_notification, text_message

INTERNAL_KEY = "internal-key-0123456789"
CUSTOMER_PHONE = "+5511912345678"


def _env(stack_env: dict[str, str]) -> dict[str, str]:
    return {
        **stack_env,
        "WHATSUP_API_KEYS": f"{INTERNAL_KEY}:internal",
        "WHATSUP_PHONE_HASH_KEY": secrets.token_hex(16),
        "WHATSUP_WHATSAPP_APP_SECRET": secrets.token_hex(16),
    }


def _registry(env: dict[str, str], tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    driver = {"driver_id": "d1", "phone": f"+{DRIVER_PHONE}", "language": "pt-BR", "name": "João Silva"}
    doc = {
        "drivers": [driver],
        "customers": [{"customer_ref": "c1", "phone": CUSTOMER_PHONE, "language": "en"}],
    }
    path.write_text(json.dumps(doc))
    command = [sys.executable, "-m", "streams", "registry", "load", str(path)]
    done = subprocess.run(
        command, env={**os.environ, **env}, cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr


class Chat:
    """The driver's phone: signed webhooks in; what the pipeline wrote back, read from the topics."""

    def __init__(self, settings: Settings, worker: WorkerProcess) -> None:
        self.settings, self.worker, self.sent = settings, worker, 0

    def topic(self, name: str) -> str:
        return topics.qualified(name, self.settings.topic_prefix)

    def post(self, message: dict[str, Any]) -> None:
        assert self.settings.whatsapp_app_secret
        body = body_of(meta_notification([message]))
        headers = {"X-Hub-Signature-256": meta_signature(self.settings.whatsapp_app_secret, body)}
        answer = httpx.post(f"{self.worker.url}/webhooks/whatsapp", content=body, headers=headers)
        assert answer.status_code == 200, answer.text

    def say(self, text: str) -> None:
        self.sent += 1
        self.post(text_message(text, mid=f"wamid.S{self.sent}", ts=int(time.time())))

    def press(self, payload: str, title: str) -> None:
        self.sent += 1
        reply = {"type": "button_reply", "button_reply": {"id": payload, "title": title}}
        self.post(meta_message("interactive", reply, mid=f"wamid.S{self.sent}", ts=int(time.time())))

    def outbound(self, match: Callable[[dict[str, Any]], bool], what: str) -> list[dict[str, Any]]:
        """The messages written to the sender that ``match``, once at least one has (the topic has several
        partitions, so a read stops only when what it waits for is there, not at the first batch)."""
        found = read_topic(
            self.settings, self.topic(topics.WHATSAPP_OUTBOUND), "OutboundMessage",
            until=lambda r: any(match(m.value) for m in r), timeout_s=60,
        )  # fmt: skip
        matching = [r.value for r in found if match(r.value)]
        assert matching, f"{what} not seen within 60s: {[r.value.get('message_key') for r in found]}"
        return matching

    def reply_to(self, n: int) -> dict[str, Any]:
        key = f"reply:meta:wamid.S{n}"
        [reply] = self.outbound(lambda m: m["message_key"] == key, f"the reply to S{n}")
        return reply

    def applied(self, count: int) -> list[Record]:
        return read_topic(
            self.settings, self.topic(topics.DELIVERIES_APPLIED), "DeliveryEvent",
            until=lambda r: len(r) >= count, timeout_s=60,
        )  # fmt: skip


def _assign(settings: Settings, delivery_id: str) -> None:
    now = int(time.time() * 1000)
    event = {
        "event_id": f"ord-{delivery_id}", "delivery_id": delivery_id, "driver_id": "d1", "type": "assigned",
        "ts": now, "pickup_lat": -23.55, "pickup_lon": -46.63, "dropoff_lat": -23.58, "dropoff_lon": -46.66,
        "promised_at": now + 1_800_000, "customer_ref": "c1", "customer_name": "Ana Souza",
        "pickup_address": "Pizzaria Bella, Rua Augusta 100", "dropoff_address": "Av. Paulista 1000, ap 52",
    }  # fmt: skip
    topic = topics.qualified(topics.DELIVERIES_EVENTS, settings.topic_prefix)
    DeliveringProducer(settings).deliver([(topic, b"d1", codec("DeliveryEvent").encode(event))])


def _settled(worker: WorkerProcess) -> None:
    """Wait until the worker has recovered its tables (its dispatcher API answers 503 until then)."""

    def answered() -> bool:
        url = f"{worker.url}/v1/drivers/nobody"
        return httpx.get(url, headers={"X-API-Key": INTERNAL_KEY}, timeout=10).status_code == 404

    wait_until(answered, "the worker's recovery", 90)


def _delivery(worker: WorkerProcess, delivery_id: str) -> dict[str, Any]:
    url = f"{worker.url}/v1/deliveries/{delivery_id}"
    answer = httpx.get(url, headers={"X-API-Key": INTERNAL_KEY}, timeout=10)
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def test_a_driver_accepts_picks_up_and_fails_a_delivery_by_chat(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    env = _env(stack_env)
    _registry(env, tmp_path)
    settings = Settings.from_env(env)
    create_topics(settings)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    try:
        chat = Chat(settings, worker)
        _settled(worker)
        _assign(settings, "D-1")
        [offer] = chat.outbound(lambda m: m["reason"] == "delivery_offer", "the offer")
        assert offer["to"] == f"+{DRIVER_PHONE}" and offer["template"] == "delivery_offer"
        assert offer["button_ids"] == ["acc:D-1", "dec:D-1"] and offer["buttons"] == ["Aceitar", "Recusar"]
        assert offer["params"][:4] == [
            "D-1",
            "Pizzaria Bella, Rua Augusta 100",
            "Ana",
            "Av. Paulista 1000, ap 52",
        ]

        # The offer's buttons are also options 1 and 2 (Twilio shows them as a numbered list): "2" declines.
        chat.say("2")
        assert chat.reply_to(1)["reason"] == "reply_delivery_declined"
        wait_until(lambda: _delivery(worker, "D-1")["status"] == "declined", "the decline", 60)

        # Dispatch gives the driver another delivery; this one is accepted by pressing the button.
        _assign(settings, "D-2")
        wait_until(lambda: len(chat.applied(3)) >= 3, "the second assignment applied", 60)
        chat.press("acc:D-2", "Aceitar")
        assert "é sua" in chat.reply_to(2)["text"]
        wait_until(lambda: _delivery(worker, "D-2")["status"] == "accepted", "the acceptance", 60)

        chat.press("qr:teleport", "Teleport")  # a button no message of ours ever had
        assert chat.reply_to(3)["reason"] == "reply_button_expired"
        chat.say("coletei o pedido")
        assert "coletado" in chat.reply_to(4)["text"]
        wait_until(lambda: _delivery(worker, "D-2")["status"] == "picked_up", "the pickup", 60)

        chat.say("não consegui entregar")
        asked = chat.reply_to(5)
        assert asked["reason"] == "reply_asked_reason" and "1. cliente ausente" in asked["text"]
        chat.say("1")
        assert "cliente ausente" in chat.reply_to(6)["text"]
        wait_until(lambda: _delivery(worker, "D-2")["status"] == "failed", "the failure", 60)
        failed = _delivery(worker, "D-2")
        assert failed["failure_reason"] == "not_home" and failed["accepted_at"] is not None
        chat.say("1")  # the question was answered: the same number now answers nothing
        assert chat.reply_to(7)["reason"] == "reply_no_question"

        steps = [(r.value["delivery_id"], r.value["type"], r.value["source"], r.value.get("failure_reason"))
                 for r in chat.applied(6)]  # fmt: skip
        assert steps == [
            ("D-1", "assigned", "api", None),
            ("D-1", "declined", "whatsapp", None),
            ("D-2", "assigned", "api", None),
            ("D-2", "accepted", "whatsapp", None),
            ("D-2", "picked_up", "whatsapp", None),
            ("D-2", "failed", "whatsapp", "not_home"),
        ]
        alerts = read_topic(
            settings, chat.topic(topics.ALERTS), "Alert", until=lambda r: len(r) >= 2, timeout_s=30
        )
        assert [(a.value["kind"], a.value["delivery_id"], a.value["detail"]) for a in alerts] == [
            ("declined", "D-1", "declined by the driver"),
            ("delivery_failed", "D-2", "reason:not_home"),
        ]
        rejected_topic = chat.topic(topics.DELIVERIES_REJECTED)
        rejected = read_topic(
            settings, rejected_topic, "RejectedDeliveryEvent", until=lambda r: False, timeout_s=3
        )
        assert rejected == []  # the chat sent the state machine only steps it could take
    finally:
        worker.stop()


def _pings(settings: Settings, start: tuple[float, float], count: int) -> None:
    """The driver's phone reporting ``count`` fixes, 5 s apart, riding south-west from ``start``."""
    now = int(time.time() * 1000)
    topic = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    records = []
    for i in range(count):
        ping = {
            "ping_id": f"p-{now}-{i}", "driver_id": "d1", "device_ts": now - (count - i) * 5_000,
            "lat": start[0] - i * 0.0003, "lon": start[1] - i * 0.0003, "accuracy_m": 5.0, "speed_mps": 8.0,
            "heading": None, "battery": 80.0, "seq": now // 1000 + i, "source": "app", "received_ts": now,
        }  # fmt: skip
        records.append((topic, b"d1", codec("GpsPing").encode(ping)))
    DeliveringProducer(settings).deliver(records)


@contextlib.contextmanager
def _worker_and_ingest(env: dict[str, str], tmp_path: Path) -> Iterator[tuple[Settings, WorkerProcess, str]]:
    """A worker and an ingest process (which answers tracking links) on this test's topics."""
    settings = Settings.from_env(env)
    create_topics(settings)
    worker = WorkerProcess(env, tmp_path / "worker.log")
    worker.start()
    ingest_url = f"http://127.0.0.1:{env['WHATSUP_INGEST_PORT']}"
    ingest = Process("ingest", "ingest", {**os.environ, **env}, f"{ingest_url}/health", tmp_path)
    ingest.start()
    try:
        ingest.wait_healthy(60)
        yield settings, worker, ingest_url
    finally:
        ingest.stop()
        worker.stop()


def test_the_customer_follows_the_delivery_by_link_and_stop_is_honoured(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**_env(stack_env), "WHATSUP_INGEST_PORT": str(free_port())}
    _registry(env, tmp_path)
    with _worker_and_ingest(env, tmp_path) as (settings, worker, ingest_url):
        chat = Chat(settings, worker)
        _settled(worker)
        _assign(settings, "D-1")
        wait_until(lambda: len(chat.applied(1)) >= 1, "the assignment", 60)
        chat.press("acc:D-1", "Aceitar")
        chat.reply_to(1)
        chat.say("peguei o pedido")
        chat.reply_to(2)
        _pings(settings, (-23.572, -46.652), 6)  # within 2 km of the door
        wait_until(lambda: _delivery(worker, "D-1")["eta"] is not None, "an ETA for the delivery", 60)
        chat.say("a caminho")
        chat.reply_to(3)

        def told(reason: str) -> dict[str, Any]:
            [message] = chat.outbound(lambda m: m["to"] == CUSTOMER_PHONE and m["reason"] == reason, reason)
            return message

        picked = told("delivery_picked_up")
        on_the_way = told("delivery_on_the_way")
        assert (picked["language"], picked["template"]) == ("en", "delivery_picked_up")
        assert picked["params"][:2] == ["D-1", "João"] and "Silva" not in json.dumps(picked)
        assert on_the_way["params"][2].startswith("expected at ")
        link = on_the_way["params"][-1]
        assert link.startswith(f"{ingest_url}/t/")

        # The link shows the ETA the worker published last, and the driver's first name, never a phone.
        etas = read_topic(
            settings,
            chat.topic(topics.DELIVERIES_ETA),
            "EtaUpdate",
            until=lambda r: any(e.value["delivery_id"] == "D-1" for e in r),
            timeout_s=30,
        )
        published = [e.value["eta"] for e in etas if e.value["delivery_id"] == "D-1"][-1]
        shown = httpx.get(link, params={"format": "json"}, timeout=10)
        assert shown.status_code == 200, shown.text
        view = shown.json()
        assert (view["status"], view["eta"], view["driver"]) == ("en_route", published, "João")
        assert view["position"] is not None  # riding, within 2 km of the door
        assert DRIVER_PHONE not in shown.text and "98765" not in shown.text
        page = httpx.get(link, headers={"Accept-Language": "es-AR,es;q=0.9"}, timeout=10)
        assert page.status_code == 200 and "En camino" in page.text and "João" in page.text
        token = link.rsplit("/", 1)[1]
        for forged in (token[:-2] + ("AA" if not token.endswith("AA") else "BB"), "nothing", "a" * 500):
            refused = httpx.get(f"{ingest_url}/t/{forged}", timeout=10)
            assert (refused.status_code, refused.json()["error"]) == (404, "not_found")

        # STOP from the customer's phone: confirmed once, then nothing more reaches them.
        stop = meta_message(
            "text", {"body": "PARAR"}, mid="wamid.STOP", frm=CUSTOMER_PHONE.lstrip("+"), ts=int(time.time())
        )
        chat.post(stop)
        confirmed = chat.outbound(lambda m: m["reason"] == "opted_out", "the STOP confirmation")
        assert confirmed[0]["language"] == "pt_BR" and "VOLTAR" in confirmed[0]["text"]
        chat.say("não consegui entregar, cliente ausente")
        assert "cliente ausente" in chat.reply_to(4)["text"]
        wait_until(lambda: _delivery(worker, "D-1")["status"] == "failed", "the failure", 60)
        # Everything written to the sender, read for 5 s after the notify agent has had 3 s to act.
        time.sleep(3)
        outbound = chat.topic(topics.WHATSAPP_OUTBOUND)
        everything = read_topic(settings, outbound, "OutboundMessage", until=lambda r: False, timeout_s=5)
        reasons = [r.value["reason"] for r in everything if r.value["to"] == CUSTOMER_PHONE]
        # An ETA shift from the promise may have been told too; after STOP, only its confirmation.
        assert reasons[-1] == "opted_out" and "delivery_failed" not in reasons, reasons
        assert set(reasons) <= {"delivery_picked_up", "delivery_on_the_way", "eta_update", "opted_out"}, (
            reasons
        )


def test_the_demo_step_runs_a_delivery_from_the_chat(
    stack_env: dict[str, str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {**_env(stack_env), "WHATSUP_INGEST_PORT": str(free_port())}
    env["WHATSUP_API_KEYS"] += f",{secrets.token_hex(16)}:ingest"
    llm_key = secrets.token_hex(16)
    with llm_in_thread(llm_key) as (model, llm_url):
        env.update(
            WHATSUP_CONVERSATION_LLM_ENABLED="1", WHATSUP_LLM_API_KEY=llm_key, WHATSUP_LLM_BASE_URL=llm_url
        )
        with _worker_and_ingest(env, tmp_path) as (settings, _, _):
            assert chat_demo.show(settings)
    shown = capsys.readouterr().out
    assert "chat step: every check passed" in shown and '"position": {' in shown
    # The pickup was told in words only the model knew; the injection never reached it.
    asked = [r["body"]["messages"][-1]["content"] for r in model.requests]
    assert asked == ["já tô com a pizza, saindo da pizzaria"], asked
    assert "dispatch alerted: guardrail reason:prompt_injection" in shown
    assert chat_demo.DRIVER_PHONE[-8:] not in shown and chat_demo.CUSTOMER_PHONE[-8:] not in shown
