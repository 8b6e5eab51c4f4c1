"""The registry in real Redis: loaded by the command, read by hash and id, one refusal a day."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import redis.asyncio as aioredis

from connectors.whatsapp.phones import hash_phone
from connectors.whatsapp.registry import Customer, Driver, Registry
from tests.integration.stack import ROOT


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
            assert await registry.claim_refusal(stranger, "2026-11-23") is True
            assert await registry.claim_refusal(stranger, "2026-11-23") is False
            assert await registry.claim_refusal(stranger, "2026-11-24") is True
        finally:
            await client.aclose()

    asyncio.run(check())
