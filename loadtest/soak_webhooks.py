"""The chaos soak's inbound WhatsApp load: signed Meta notifications from registered drivers, retried as
Meta retries them, and the check that each one answered 200 is on ``whatsapp.events.raw`` exactly once.

Meta delivers a notification until it gets a 200, retrying with a growing delay; a 200 is the promise that
the message is durably on Kafka. So the load keeps every message it has not yet had a 200 for and sends it
again (after 1 s, 2 s, 4 s, up to 15 s apart), through every fault, and goes on retrying for a grace period
after the load ends. A request that times out may still have been taken: the retry must then be answered
as a duplicate, not written twice.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from base import topics
from base.settings import Settings
from connectors.whatsapp.registry_load import load_registry_file
from connectors.whatsapp.signatures import meta_signature
from loadtest import verify
from schemas.codecs import codec

TEXTS = ("meus pedidos hoje", "trânsito na marginal", "cheguei", "ok, a caminho")
REQUEST_TIMEOUT_S = 20.0
MAX_RETRY_DELAY_S = 15.0


@dataclass
class WebhookFindings:
    """Each notification's fate: answered 200 or not, and how often it is on the raw events topic."""

    sent: int = 0
    attempts: int = 0
    answered: int = 0
    unanswered: int = 0
    lost: int = 0
    twice: int = 0
    # Answers other than 200 (by status) and requests with no answer (by exception), over all attempts.
    refusals: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every notification answered 200 is on the topic once; none is there twice."""
        return self.lost == 0 and self.twice == 0


def register_drivers(settings: Settings, driver_ids: list[str], path: Path) -> list[str]:
    """Register ``driver_ids`` (active, pt-BR) with made-up phones; return the phones in WhatsApp's form."""
    phones = [f"55119{7_000_000 + i:08d}" for i in range(len(driver_ids))]
    rows = [f"{d},+{p},active,pt-BR" for d, p in zip(driver_ids, phones, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("driver_id,phone,status,language\n" + "\n".join(rows) + "\n", encoding="utf-8")
    asyncio.run(load_registry_file(settings, path))
    return phones


def notification(message_id: str, phone: str, text: str) -> bytes:
    """One Meta notification carrying one text message, as Meta's Cloud API sends it."""
    message = {"from": phone, "id": message_id, "timestamp": str(int(time.time())), "type": "text",
               "text": {"body": text}}  # fmt: skip
    doc = {"object": "whatsapp_business_account",
           "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
               "messaging_product": "whatsapp", "metadata": {"phone_number_id": "1"},
               "messages": [message]}}]}]}  # fmt: skip
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


class WebhookLoad(threading.Thread):
    """Post ``per_s`` signed notifications a second until halted, each retried until it is answered 200."""

    def __init__(self, url: str, app_secret: str, phones: list[str], per_s: float, run: str) -> None:
        super().__init__(name="soak-webhooks", daemon=True)
        self.url, self.app_secret, self.phones, self.per_s, self.run_id = url, app_secret, phones, per_s, run
        self.sent: list[str] = []
        self.answered: set[str] = set()
        self.attempts = 0
        self.refusals: collections.Counter[str] = collections.Counter()
        self.halt = threading.Event()
        self.grace_s = 180.0

    def run(self) -> None:
        asyncio.run(self._run())

    def stop(self, grace_s: float = 180.0) -> None:
        """Stop sending new notifications; keep retrying the unanswered ones for up to ``grace_s``."""
        self.grace_s = grace_s
        self.halt.set()
        self.join(grace_s + REQUEST_TIMEOUT_S + 30)

    async def _run(self) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=16)
        async with httpx.AsyncClient(timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
            deliveries: set[asyncio.Task[None]] = set()
            while not self.halt.is_set():
                index = len(self.sent)
                message_id = f"wamid.soak{self.run_id}.{index}"
                phone, text = self.phones[index % len(self.phones)], TEXTS[index % len(TEXTS)]
                self.sent.append(message_id)
                task = asyncio.create_task(
                    self._deliver(client, message_id, notification(message_id, phone, text))
                )
                deliveries.add(task)
                task.add_done_callback(deliveries.discard)
                await asyncio.sleep(1 / self.per_s)
            if deliveries:
                await asyncio.wait(deliveries, timeout=self.grace_s)
            for task in deliveries:
                task.cancel()
            # Wait for the cancelled ones to let go of their connections before the client closes them.
            await asyncio.gather(*deliveries, return_exceptions=True)

    async def _deliver(self, client: httpx.AsyncClient, message_id: str, body: bytes) -> None:
        """Post one notification until it is answered 200, as Meta does, or the grace period ends."""
        headers = {
            "X-Hub-Signature-256": meta_signature(self.app_secret, body),
            "Content-Type": "application/json",
        }
        delay = 1.0
        while True:
            self.attempts += 1
            try:
                answer = await client.post(self.url, content=body, headers=headers)
                if answer.status_code == 200:
                    self.answered.add(message_id)
                    return
                self.refusals[str(answer.status_code)] += 1
            except httpx.HTTPError as exc:
                self.refusals[type(exc).__name__] += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_DELAY_S)

    def findings(self, settings: Settings) -> WebhookFindings:
        """Count, on the raw events topic, each notification sent."""
        topic = topics.qualified(topics.WHATSAPP_EVENTS_RAW, settings.topic_prefix)
        decode, ours = codec("WhatsAppEvent").decode, set(self.sent)
        seen: collections.Counter[str] = collections.Counter()
        for _, _, value in verify.read_topic(settings, topic):
            message_id = str(decode(value)["message_id"])
            if message_id in ours:
                seen[message_id] += 1
        return WebhookFindings(
            sent=len(self.sent),
            attempts=self.attempts,
            answered=len(self.answered),
            unanswered=len(ours - self.answered),
            lost=sum(1 for m in self.answered if seen[m] == 0),
            twice=sum(1 for n in seen.values() if n > 1),
            refusals=dict(self.refusals),
        )
