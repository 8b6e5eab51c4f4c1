"""The sender's decisions on real Redis against the local sandboxes: claims, every error class, backoff,
the 131047 template fallback, dead letters, the circuit breaker and the Twilio fallback."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import httpx
from redis.asyncio import Redis

from connectors.sandbox.run import Sandboxes
from connectors.whatsapp.breaker import OPEN, CircuitBreaker
from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.claims import ClaimStore
from connectors.whatsapp.cloud import WhatsAppCloudClient
from connectors.whatsapp.late_failure import LateWindowFallback
from connectors.whatsapp.normalize import normalize_meta
from connectors.whatsapp.ratelimit import RedisTokenBucket
from connectors.whatsapp.route import DEAD, STATUS, Policy, Route
from connectors.whatsapp.sender import Sender
from connectors.whatsapp.signatures import verify_meta
from connectors.whatsapp.twilio import TwilioClient
from schemas.codecs import codec
from tests.unit.sandbox_helpers import (
    APP_SECRET,
    AUTH,
    NUMBER_ID,
    SID,
    TOKEN,
    callback_receiver,
    sandboxes,
    wait_for,
)

FAST = Policy(max_attempts=4, backoff_base_s=0.01, backoff_max_s=0.05, confirm_wait_s=0.3)


@dataclass
class Harness:
    """A Sender wired to real Redis and in-process sandboxes, its Kafka output kept in lists."""

    sender: Sender
    boxes: Sandboxes
    claims: ClaimStore
    redis: Redis
    emitted: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    confirmations: dict[str, dict[str, Any]] = field(default_factory=dict)

    def statuses(self, key: str) -> list[tuple[str, str, int | None, int]]:
        return [
            (r["provider"], r["status"], r["error_code"], r["attempt"])
            for kind, r in self.emitted
            if kind == STATUS and r["message_key"] == key
        ]

    def dead(self) -> list[dict[str, Any]]:
        return [r for kind, r in self.emitted if kind == DEAD]

    def meta_keys(self) -> list[str]:
        return [m["biz_opaque_callback_data"] for m in self.boxes.meta.state.messages]

    async def control(self, base: str, route: str, **body: Any) -> None:
        async with httpx.AsyncClient() as http:
            (await http.post(f"{base}/_sandbox/{route}", json=body)).raise_for_status()


@asynccontextmanager
async def harness(
    redis_url: str,
    *,
    twilio: bool = False,
    policy: Policy = FAST,
    breaker_failures: int = 5,
    reset_s: float = 30.0,
    callback_url: str | None = None,
) -> AsyncIterator[Harness]:
    run = uuid.uuid4().hex[:8]
    redis = Redis.from_url(redis_url)
    async with sandboxes(callback_url) as boxes, httpx.AsyncClient(timeout=0.5) as http:
        meta = Route(
            WhatsAppCloudClient(
                http, api_url=boxes.meta_url, version="v21.0", phone_number_id=NUMBER_ID, token=TOKEN
            ),
            CircuitBreaker(breaker_failures, reset_s),
            RedisTokenBucket(redis, f"test:{run}:bucket:meta", 500, 50),
        )
        fallback = None
        if twilio:
            client = TwilioClient(
                http,
                api_url=boxes.twilio_url,
                account_sid=SID,
                auth_token=AUTH,
                from_number="+15550001111",
                content_sids={"whatsup_update": "HX" + "b" * 32},
            )
            fallback = Route(
                client, CircuitBreaker(5, 30), RedisTokenBucket(redis, f"test:{run}:bucket:tw", 500, 50)
            )
        claims = ClaimStore(redis, f"test:{run}:claim:", "owner-a", 3600)
        emitted: list[tuple[str, dict[str, Any]]] = []
        confirmations: dict[str, dict[str, Any]] = {}

        async def emit(kind: str, record: dict[str, Any]) -> None:
            emitted.append((kind, record))
            if kind == STATUS and record["status"] == "sent":
                confirmations[record["message_key"]] = record

        async def confirm(key: str, since_ms: int) -> dict[str, Any] | None:
            return confirmations.get(key)

        sender = Sender(meta=meta, twilio=fallback, claims=claims, emit=emit, confirm=confirm, policy=policy)
        try:
            yield Harness(sender, boxes, claims, redis, emitted, confirmations)
        finally:
            await redis.delete(*[k async for k in redis.scan_iter(f"test:{run}:*")] or [f"test:{run}:none"])
            await redis.aclose()


def record(key: str, to: str = "+5511987654321", **fields: Any) -> bytes:
    return codec("OutboundMessage").encode(
        {
            "message_key": key,
            "to": to,
            "to_hash": "hash-" + to[-4:],
            "text": "Your order is 5 minutes away",
            "reason": "eta_update",
            "created_at": int(time.time() * 1000),
            **fields,
        }
    )


def run(test: Callable[..., Awaitable[None]], redis_url: str, **kwargs: Any) -> None:
    async def main() -> None:
        async with harness(redis_url, **kwargs) as h:
            await asyncio.wait_for(test(h), timeout=30)

    asyncio.run(main())


async def handle(h: Harness, key: str, **fields: Any) -> None:
    await h.sender.handle(record(key, **fields), b"hash", f"test:0:{key}")


def test_a_key_is_sent_once_even_when_handled_again(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await handle(h, "once")
        await handle(h, "once")
        assert h.meta_keys() == ["once"]
        # The replay states the sent status again (it may have died with a crashed process), sends nothing.
        assert h.statuses("once") == [("meta", "sent", None, 1), ("meta", "sent", None, 1)]
        assert h.emitted[0][1]["provider_message_id"] == h.emitted[1][1]["provider_message_id"]
        stored = json.loads(await h.redis.get(h.claims.key("once")))
        assert stored["state"] == "sent" and stored["id"].startswith("wamid.")

    run(test, redis_url)


def test_transient_errors_are_retried_with_backoff_then_sent(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await h.control(h.boxes.meta_url, "faults", code=131000, times=1)
        await h.control(h.boxes.meta_url, "faults", http_status=503, times=1)
        await h.control(h.boxes.meta_url, "faults", code=130429, times=1)
        await handle(h, "flaky")
        assert h.meta_keys() == ["flaky"]
        assert h.statuses("flaky") == [
            ("meta", "queued", 131000, 1),
            ("meta", "queued", 2, 2),
            ("meta", "queued", 130429, 3),
            ("meta", "sent", None, 4),
        ]

    run(test, redis_url)


def test_a_slow_answer_that_was_accepted_is_confirmed_not_resent(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        # The sandbox accepts after the client gave up; its status callback (here: the record the webhook
        # would write) confirms it, so the sender does not send again.
        await h.control(h.boxes.meta_url, "faults", delay_s=0.6, times=1)

        async def confirm_from_sandbox(key: str, since_ms: int) -> dict[str, Any] | None:
            for m in h.boxes.meta.state.messages:
                if m["biz_opaque_callback_data"] == key:
                    return {"provider": "meta", "provider_message_id": m["id"], "status": "sent"}
            return None

        h.sender.confirm = confirm_from_sandbox
        await handle(h, "slow")
        await asyncio.sleep(0.6)
        assert h.meta_keys() == ["slow"]
        assert h.statuses("slow") == [("meta", "queued", None, 1)]
        assert json.loads(await h.redis.get(h.claims.key("slow")))["state"] == "sent"

    run(test, redis_url)


def test_a_late_131047_status_sends_the_template_once(redis_url: str) -> None:
    """Meta accepts the free text, then its status callback reports 131047: the template goes out once."""

    async def main() -> None:
        async with (
            callback_receiver() as (url, received),
            harness(redis_url, callback_url=f"{url}/webhooks/whatsapp") as h,
        ):
            to = "+5511900000048"
            closed = {"window_open": False, "window_checked_late": True}
            await h.control(h.boxes.meta_url, "recipients", to=to, **closed)
            original = record(
                "eta:9", to=to, template="eta_update", params=["D-9", "12:40", "https://track.example/t/x"]
            )
            await h.sender.handle(original, b"hash-0048", "test:0:9")
            assert h.statuses("eta:9") == [("meta", "sent", None, 1)]
            # The sandbox's signed callback, taken as the webhook takes it.
            await wait_for(lambda: bool(received.posts))
            body, headers, _ = received.posts[0]
            verify_meta(APP_SECRET, body, headers["X-Hub-Signature-256"])
            [update] = normalize_meta(body, "phone-key", int(time.time() * 1000)).statuses
            assert (update.status["message_key"], update.status["status"]) == ("eta:9", "failed")
            assert update.status["error_code"] == 131047
            failed = codec("MessageStatus").encode(update.status)

            requeued: list[tuple[bytes, bytes]] = []

            async def read_original(source: str) -> bytes | None:
                return original if source == "test:0:9" else None

            async def produce(key: bytes, value: bytes) -> None:
                requeued.append((key, value))

            late = LateWindowFallback(
                h.claims, read_original, produce, "whatsup_update", claim_wait_s=0.5, max_age_s=1800
            )
            # Read half an hour later (a new deployment starting on the topic's history): left alone.
            reported = update.status["ts"]
            assert await late.handle(failed, reported + 1_800_001) == "stale" and requeued == []
            # Meta retries callbacks, and a restarted watcher replays: the failure is seen twice.
            assert await late.handle(failed, reported + 1_000) == "template_queued"
            assert await late.handle(failed, reported + 2_000) == "template_queued"
            for i, (key, value) in enumerate(requeued):
                await h.sender.handle(value, key, f"test:1:{i}")
            sent = [(m["type"], m["biz_opaque_callback_data"]) for m in h.boxes.meta.state.messages]
            assert sent == [("text", "eta:9"), ("template", "eta:9:template")]
            template = h.boxes.meta.state.messages[1]["payload"]["template"]
            assert template["name"] == "eta_update"
            assert [p["text"] for p in template["components"][0]["parameters"]] == [
                "D-9",
                "12:40",
                "https://track.example/t/x",
            ]
            # On whatsapp.status: sent, then the replayed record's restatement; never a second send.
            assert h.statuses("eta:9:template") == [("meta", "sent", None, 1), ("meta", "sent", None, 1)]
            # The template's own record is not free text: a failure of it starts no further fallback.
            claim = await h.claims.read("eta:9:template")
            assert claim is not None and claim.as_template and claim.source == "test:1:0"

    asyncio.run(asyncio.wait_for(main(), timeout=30))


def test_window_closed_sends_the_template_instead(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        to = "+5511900000047"
        await h.control(h.boxes.meta_url, "recipients", to=to, window_open=False)
        await handle(
            h, "late", to=to, template="eta_update", params=["D-9", "12:40", "https://track.example/t/x"]
        )
        assert h.statuses("late") == [("meta", "queued", 131047, 1), ("meta", "sent", None, 2)]
        sent = h.boxes.meta.state.messages
        assert [m["type"] for m in sent] == ["template"]
        assert sent[0]["payload"]["template"]["name"] == "eta_update"

    run(test, redis_url)


def test_permanent_errors_are_dead_lettered_with_their_code_and_never_retried(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        to = "+5511900000026"
        await h.control(h.boxes.meta_url, "recipients", to=to, deliverable=False)
        await handle(h, "gone", to=to)
        await h.control(h.boxes.meta_url, "faults", code=131051, times=1)
        await handle(h, "odd")
        await handle(h, "buttons", buttons=["a", "b", "c", "d"])
        await handle(h, "gone", to=to)  # a replay: already failed, not tried again
        assert h.statuses("gone") == [("meta", "failed", 131026, 1)]
        assert [(r["message_key"], r["error_code"], r["error_title"]) for r in h.dead()] == [
            ("gone", 131026, "(#131026) Message Undeliverable (the recipient cannot receive this message)"),
            ("odd", 131051, "(#131051) Unsupported message type (injected)"),
            ("buttons", None, "bad_buttons"),
        ]
        assert json.loads(await h.redis.get(h.claims.key("gone")))["state"] == "failed"
        assert h.boxes.meta.state.answered == {"131026": 1, "131051": 1}

    run(test, redis_url)


def test_retries_stop_at_the_limit_and_dead_letter(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await h.control(h.boxes.meta_url, "faults", code=131000, times=10)
        await handle(h, "down")
        assert [s[1] for s in h.statuses("down")] == ["queued", "queued", "queued", "failed"]
        assert h.dead()[0]["error_code"] == 131000 and h.meta_keys() == []

    run(test, redis_url)


def test_an_undecodable_record_is_dead_lettered(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await h.sender.handle(b"\x00garbage", b"some-hash", "whatsapp.outbound:3:17")
        dead = h.dead()
        assert dead[0]["message_key"] == "undecodable:whatsapp.outbound:3:17"
        assert dead[0]["error_title"] == "undecodable" and dead[0]["to_hash"] == "some-hash"

    run(test, redis_url)


def test_the_breaker_opens_and_routes_to_twilio(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await h.control(h.boxes.meta_url, "faults", code=131000, times=100)
        await handle(h, "fb-1")
        assert h.statuses("fb-1") == [
            ("meta", "queued", 131000, 1),
            ("meta", "queued", 131000, 2),
            ("twilio", "sent", None, 3),
        ]
        assert h.sender.meta.breaker.state == OPEN
        await handle(h, "fb-2", template="whatsup_update", text=None)
        assert h.statuses("fb-2") == [("twilio", "sent", None, 1)]
        forms = [m["form"] for m in h.boxes.twilio.state.messages]
        assert "Body" in forms[0] and forms[1]["ContentSid"] == "HX" + "b" * 32
        assert h.meta_keys() == []

    run(test, redis_url, twilio=True, breaker_failures=2)


def test_without_twilio_an_open_breaker_holds_sends_until_a_probe_succeeds(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await h.control(h.boxes.meta_url, "faults", code=131000, times=2)
        started = time.monotonic()
        await handle(h, "held")
        assert time.monotonic() - started >= 0.4  # waited for the breaker's reset
        assert [s[1] for s in h.statuses("held")] == ["queued", "queued", "sent"]
        assert h.sender.meta.breaker.state == "closed"

    run(test, redis_url, breaker_failures=2, reset_s=0.5)


def test_a_pending_claim_left_by_a_crash_is_confirmed_or_taken_over(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        crashed = ClaimStore(h.redis, h.claims.key(""), "owner-crashed", 3600)
        assert await crashed.claim("was-sent") is None
        assert await crashed.claim("never-sent") is None
        # The crashed sender's "sent" status reached Kafka before it died; "never-sent" left no trace.
        h.confirmations["was-sent"] = {"provider": "meta", "provider_message_id": "wamid.X", "status": "sent"}
        await handle(h, "was-sent")
        await handle(h, "never-sent")
        assert h.meta_keys() == ["never-sent"]
        assert json.loads(await h.redis.get(h.claims.key("was-sent")))["id"] == "wamid.X"
        assert json.loads(await h.redis.get(h.claims.key("never-sent")))["state"] == "sent"

    run(test, redis_url)


def test_a_live_owner_keeps_its_claim(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        other = ClaimStore(h.redis, h.claims.key(""), "owner-b", 3600)
        assert await other.claim("busy") is None

        async def alive() -> None:  # the other replica heartbeats, then finishes its send
            for _ in range(6):
                await other.heartbeat("busy")
                await asyncio.sleep(0.1)
            await other.finish("busy", "sent", provider="meta", provider_id="wamid.B")

        await asyncio.gather(alive(), handle(h, "busy"))
        assert h.meta_keys() == []
        assert json.loads(await h.redis.get(h.claims.key("busy")))["id"] == "wamid.B"

    run(test, redis_url)


def test_a_defect_met_by_one_record_dead_letters_it_and_the_stream_goes_on(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        client = h.sender.meta.client
        original = client.send

        async def broken(message: Any, *, as_template: bool) -> str:
            raise ValueError("a defect in payload building")

        client.send = broken  # type: ignore[method-assign]
        await handle(h, "poison")
        client.send = original  # type: ignore[method-assign]
        await handle(h, "next")
        assert [(r["message_key"], r["error_title"]) for r in h.dead()] == [("poison", "internal_error")]
        assert h.meta_keys() == ["next"]

    run(test, redis_url)


def test_a_template_the_catalogue_does_not_approve_is_dead_lettered_unsent(redis_url: str) -> None:
    async def test(h: Harness) -> None:
        await handle(h, "odd", text=None, template="not_approved")
        await handle(h, "few", text=None, template="eta_update", params=["12:40"])
        await handle(
            h, "fine", text=None, template="eta_update", params=["D-1", "12:40", "https://track.example/t/x"]
        )
        assert h.meta_keys() == ["fine"]
        dead = [(r["message_key"], r["error_title"]) for r in h.dead()]
        assert dead == [("odd", "unknown_template"), ("few", "template_params")]

    run(test, redis_url, policy=replace(FAST, catalogue=load_catalogue()))
