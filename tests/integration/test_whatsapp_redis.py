"""WhatsApp state in real Redis: the registry, webhook claims released when Kafka fails, notify memory."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from connectors.whatsapp.catalogue import load_catalogue
from connectors.whatsapp.dedupe import WebhookDeduper
from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.redis_pool import Commands, RedisBatcher
from connectors.whatsapp.registry import Customer, Driver, Registry
from connectors.whatsapp.signatures import meta_signature
from connectors.whatsapp.webhook import IntakeConfig, WebhookIntake
from streams.notify.policy import CustomerMemory
from streams.notify.store import NotifyStore
from tests.integration.stack import ROOT
from tests.whatsapp_payloads import body_of, meta_notification, text_message


def _load(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "streams", "registry", "load", str(path)]
    return subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)


def test_registry_load_command_then_lookups_and_daily_refusals(
    stack_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**os.environ, **stack_env, "WHATSUP_PHONE_HASH_KEY": "registry-test-key"}
    bad = tmp_path / "bad.csv"
    bad.write_text("driver_id,phone,status\nd1,+5511987654321,fired\n")
    refused = _load(env, bad)
    assert refused.returncode == 65 and "bad.csv row 1" in refused.stderr

    good = tmp_path / "registry.json"
    good.write_text(
        '{"drivers": [{"driver_id": "d1", "phone": "+5511987654321", "language": "pt-BR"},'
        ' {"driver_id": "d2", "phone": "+5491123456789", "status": "suspended", "language": "es"}],'
        ' "customers": [{"customer_ref": "c1", "phone": "+5511912345678", "language": "en"}]}'
    )
    loaded = _load(env, good)
    assert loaded.returncode == 0, loaded.stderr
    assert "loaded 2 driver(s) and 1 customer(s)" in loaded.stdout

    async def check() -> None:
        client = aioredis.from_url(stack_env["WHATSUP_REDIS_URL"])
        try:
            registry = Registry(client, "registry-test-key", stack_env["WHATSUP_TOPIC_PREFIX"])
            d1 = Driver("d1", "+5511987654321", "active", "pt-BR")
            assert await registry.driver_by_hash(hash_phone("registry-test-key", "+5511987654321")) == d1
            assert await registry.driver_by_id("d1") == d1
            assert (await registry.driver_by_id("d2")).status == "suspended"  # type: ignore[union-attr]
            assert await registry.driver_by_id("nobody") is None
            assert await registry.customer("c1") == Customer("c1", "+5511912345678", "en")
            stranger = hash_phone("registry-test-key", "+5511900000000")
            assert await registry.driver_by_hash(stranger) is None
            d1_hash = hash_phone("registry-test-key", "+5511987654321")
            assert await registry.drivers_by_hash([d1_hash, stranger, d1_hash]) == [d1, None, d1]
            assert await registry.claim_refusal(stranger, "2026-11-23") is True
            assert await registry.claim_refusal(stranger, "2026-11-23") is False
            assert await registry.claim_refusal(stranger, "2026-11-24") is True
        finally:
            await client.aclose()

    asyncio.run(check())


def test_claims_are_released_when_kafka_fails_so_the_retry_is_taken(stack_env: dict[str, str]) -> None:
    prefix = stack_env["WHATSUP_TOPIC_PREFIX"]
    body = body_of(meta_notification([text_message("cheguei", mid=f"wamid.{prefix}")]))
    signature = meta_signature("secret", body)
    sent: list[list[tuple[str, str, bytes]]] = []

    async def broken(records: list[tuple[str, str, bytes]]) -> None:
        raise TimeoutError("broker unreachable")

    async def working(records: list[tuple[str, str, bytes]]) -> None:
        sent.append(records)

    async def run() -> None:
        client = aioredis.from_url(stack_env["WHATSUP_REDIS_URL"])
        try:
            config = IntakeConfig("hash-key", "secret", None, None, prefix)
            intake = WebhookIntake(config, WebhookDeduper(client, prefix), None, broken, load_catalogue())
            with pytest.raises(TimeoutError):
                await intake.handle_meta(body, signature)
            intake.send = working
            assert (await intake.handle_meta(body, signature)).body == {"received": 1, "duplicates": 0}
            assert (await intake.handle_meta(body, signature)).body == {"received": 0, "duplicates": 1}
        finally:
            await client.aclose()

    asyncio.run(run())
    assert len(sent) == 1 and len(sent[0]) == 1


def test_notify_memory_and_reply_windows(stack_env: dict[str, str]) -> None:
    async def run() -> None:
        client = aioredis.from_url(stack_env["WHATSUP_REDIS_URL"])
        try:
            store = NotifyStore(client, stack_env["WHATSUP_TOPIC_PREFIX"])
            assert await store.memory("D-1") == CustomerMemory()
            await store.remember("D-1", CustomerMemory(last_eta=5, last_sent_at=4))
            assert await store.memory("D-1") == CustomerMemory(5, 4)
            await store.remember_customer("D-1", "c-1")
            assert await store.customer_ref("D-1") == "c-1"
            assert await store.last_inbound("h") is None
            await store.touch_windows({"h": 2_000})
            await store.touch_windows({"h": 1_000})  # a late, older message does not move the window back
            assert await store.last_inbound("h") == 2_000
            await store.touch_windows({"h": 3_000})
            assert await store.last_inbound("h") == 3_000
            # A batch of numbers in one call: each keeps its own newest time.
            await store.touch_windows({"h": 2_500, "h2": 7_000, "h3": 1})
            assert [await store.last_inbound(h) for h in ("h", "h2", "h3")] == [3_000, 7_000, 1]
            assert 0 < await client.pttl(f"{store.prefix}inbound:h2") <= 86_400_000
        finally:
            await client.aclose()

    asyncio.run(run())


def test_concurrent_requests_share_a_round_trip_and_get_their_own_replies(stack_env: dict[str, str]) -> None:
    prefix = stack_env["WHATSUP_TOPIC_PREFIX"]

    async def run() -> None:
        client = aioredis.from_url(stack_env["WHATSUP_REDIS_URL"])
        round_trips = 0
        real_evalsha = client.evalsha

        async def counting_evalsha(*args: object) -> object:
            nonlocal round_trips
            round_trips += 1
            return await real_evalsha(*args)  # type: ignore[arg-type]

        client.evalsha = counting_evalsha  # type: ignore[method-assign]
        try:
            await client.set(f"{prefix}k7", b"seven")
            batcher = RedisBatcher(client)

            async def request(i: int) -> list[object]:
                commands = Commands()
                commands.set(f"{prefix}claim{i % 25}", b"1", ex=60, nx=True)
                commands.get(f"{prefix}k{i}")
                return await batcher.execute(commands)

            replies = await asyncio.gather(*(request(i) for i in range(50)))
            assert [bool(r[0]) for r in replies] == [True] * 25 + [False] * 25  # each claim once
            assert [r[1] for r in replies] == [b"seven" if i == 7 else None for i in range(50)]
            assert 0 < round_trips < 50  # requests of the same loop turn shared one script call
            assert 0 < await client.ttl(f"{prefix}claim0") <= 60  # a claim is kept only as long as asked
        finally:
            await client.aclose()

    asyncio.run(run())
