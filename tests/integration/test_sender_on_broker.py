"""The sender as a process on the real broker and Redis: killed with SIGKILL mid-stream and restarted, the
sandbox still receives every message exactly once; the shared token bucket and the status scan on real
services."""

from __future__ import annotations

import asyncio
import re
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from redis.asyncio import Redis

from base import topics
from base.kafka import DeliveringProducer
from base.settings import Settings
from connectors.whatsapp.confirm import find_confirmation
from connectors.whatsapp.ratelimit import RedisTokenBucket
from connectors.whatsapp.route import status_record
from demos import sender as whatsapp_demo
from demos import twilio_fallback as fallback_demo
from schemas.codecs import codec
from tests.integration.sender_stack import (
    ServiceProcess,
    outbound,
    produce_outbound,
    sandbox_messages,
    sender_env,
    status_webhook,
    wait_for_sandbox,
)
from tests.integration.stack import free_port, read_topic
from tests.unit.sandbox_helpers import APP_SECRET, AUTH, SID


def test_sigkill_mid_stream_every_message_reaches_the_sandbox_exactly_once(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    total = 600
    keys = [f"kill-{i}" for i in range(total)]
    # 150 recipients, 4 messages each: within the sandbox's per-recipient burst.
    produce_outbound(stack_settings, [outbound(k, f"+55119{i % 150:08d}") for i, k in enumerate(keys)])
    # Meta's status callbacks reach whatsapp.status through the webhook: the proof that resolves a claim
    # left pending by a kill between the provider's answer and the claim's update.
    with status_webhook(stack_settings, APP_SECRET) as callback_url:
        env = sender_env(
            stack_env,
            WHATSUP_SANDBOX_RATE_PER_S="300",
            WHATSUP_SENDER_RATE_PER_S="150",
            WHATSUP_SENDER_CONFIRM_WAIT_S="3",
            WHATSUP_SENDER_TIMEOUT_S="2",
            WHATSUP_SENDER_BATCH_SIZE="50",
            WHATSUP_SANDBOX_CALLBACK_URL=callback_url,
        )
        sandbox = ServiceProcess(env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
        sender = ServiceProcess(env, tmp_path / "sender.log", "sender", "WHATSUP_SENDER_METRICS_PORT")
        sandbox.start()
        try:
            for kill_at in (150, 350):
                sender.start()
                wait_for_sandbox(sandbox, kill_at)
                sender.kill()
            sender.start()
            wait_for_sandbox(sandbox, total, timeout_s=90)
            # Leave time for a duplicate to show: pending claims are resolved after the confirmation wait.
            time.sleep(5)
            received = Counter(m["biz_opaque_callback_data"] for m in sandbox_messages(sandbox))
            metrics = httpx.get(f"{sender.url}/metrics", timeout=10).text
        finally:
            sender.stop()
            sandbox.stop()
    assert set(received) == set(keys)
    assert [k for k, n in received.items() if n > 1] == []
    assert "whatsup_whatsapp_sends_total" in metrics and "+5511" not in metrics
    resolved = re.findall(
        r'^whatsup_whatsapp_ambiguous_resolved_total\{outcome="(\w+)"\} (\S+)$', metrics, re.M
    )
    print("claims left pending by the kills, resolved:", resolved or "none")

    status_topic = topics.qualified(topics.WHATSAPP_STATUS, stack_settings.topic_prefix)
    statuses = read_topic(
        stack_settings,
        status_topic,
        "MessageStatus",
        until=lambda rs: {r.value["message_key"] for r in rs if r.value.get("status") == "sent"} >= set(keys),
    )
    sent = {r.value["message_key"] for r in statuses if r.value["status"] == "sent"}
    assert sent >= set(keys), "every message has a sent status"
    assert all(r.key == r.value["message_key"].encode() for r in statuses)


def test_a_late_131047_from_the_status_callback_sends_the_template_once(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    to, key = "+5511955550047", "late-window-1"
    with status_webhook(stack_settings, APP_SECRET) as callback_url:
        env = sender_env(stack_env, WHATSUP_SANDBOX_CALLBACK_URL=callback_url)
        sandbox = ServiceProcess(env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
        sender = ServiceProcess(env, tmp_path / "sender.log", "sender", "WHATSUP_SENDER_METRICS_PORT")
        sandbox.start()
        try:
            # The Cloud API accepts the free text, then reports the closed window in a failed status.
            closed = {"to": to, "window_open": False, "window_checked_late": True}
            httpx.post(f"{sandbox.url}/_sandbox/recipients", json=closed, timeout=10).raise_for_status()
            sender.start()
            produce_outbound(
                stack_settings,
                [
                    outbound(
                        key, to, template="eta_update", params=["D-9", "12:40", "https://track.example/t/x"]
                    )
                ],
            )
            wait_for_sandbox(sandbox, 2, timeout_s=60)
            time.sleep(3)  # room for a second template, were the failure acted on twice
            sent = [(m["type"], m["biz_opaque_callback_data"]) for m in sandbox_messages(sandbox)]
            metrics = httpx.get(f"{sender.url}/metrics", timeout=10).text
        finally:
            sender.stop()
            sandbox.stop()
    assert sent == [("text", key), ("template", f"{key}:template")]
    assert 'whatsup_whatsapp_late_window_fallbacks_total{outcome="template_queued"} 1.0' in metrics
    status_topic = topics.qualified(topics.WHATSAPP_STATUS, stack_settings.topic_prefix)
    statuses = read_topic(
        stack_settings,
        status_topic,
        "MessageStatus",
        until=lambda rs: any(r.value["message_key"] == f"{key}:template" for r in rs),
    )
    seen = [(r.value["message_key"], r.value["status"], r.value["error_code"]) for r in statuses]
    assert (key, "failed", 131047) in seen and (f"{key}:template", "sent", None) in seen


def test_the_token_bucket_paces_every_replica_together(redis_url: str) -> None:
    async def main() -> None:
        key = f"test:{uuid.uuid4().hex[:8]}:bucket"
        # Two replicas, each with its own connection, share one bucket of 100/s with a burst of 10.
        replicas = [Redis.from_url(redis_url) for _ in range(2)]
        buckets = [RedisTokenBucket(r, key, 100.0, 10) for r in replicas]
        try:
            started = time.monotonic()

            async def take(bucket: RedisTokenBucket, n: int) -> list[float]:
                return [await bucket.acquire() for _ in range(n)]

            waits = await asyncio.gather(take(buckets[0], 55), take(buckets[1], 55))
            elapsed = time.monotonic() - started
            # 110 tokens: 10 from the burst, 100 at 100/s -> about one second, whoever asks.
            assert 0.9 <= elapsed <= 1.6, elapsed
            assert sum(w == 0 for w in waits[0] + waits[1]) >= 10
            ttl = await replicas[0].pttl(key)
            assert 0 < ttl <= 61_000
            # Idle for a second, a 20/s bucket refills to its burst of 5 and no further.
            slow = RedisTokenBucket(replicas[0], key + ":slow", 20.0, 5)
            for _ in range(8):
                await slow.reserve()
            await asyncio.sleep(1.0)
            assert [await slow.reserve() for _ in range(5)] == [0.0] * 5
            assert await slow.reserve() > 0.02
        finally:
            await replicas[0].delete(key, key + ":slow")
            for r in replicas:
                await r.aclose()

    asyncio.run(main())


def test_the_status_scan_finds_a_send_confirmed_on_kafka(stack_settings: Settings) -> None:
    topic = topics.qualified(topics.WHATSAPP_STATUS, stack_settings.topic_prefix)
    since = int(time.time() * 1000)
    encode = codec("MessageStatus").encode
    records = [
        status_record(f"other-{i}", "h", "meta", "sent", 1, provider_id=f"wamid.{i}") for i in range(50)
    ]
    records += [
        status_record("doubtful", "h", "meta", "queued", 1),
        status_record("doubtful", "h", "meta", "delivered", 1, provider_id="wamid.D"),
        status_record("never", "h", "meta", "queued", 1),
    ]
    # aiokafka's partitioner, like the sender's and Faust's producers.
    producer = DeliveringProducer(stack_settings, partitioner="murmur2_random")
    producer.deliver([(topic, r["message_key"].encode(), encode(r)) for r in records])
    producer.close()

    async def scan(key: str) -> dict | None:
        return await find_confirmation(
            stack_settings.kafka_bootstrap, topic, stack_settings.partitions, key, since
        )

    found = asyncio.run(scan("doubtful"))
    assert found is not None and found["provider_message_id"] == "wamid.D"
    assert asyncio.run(scan("never")) is None
    assert asyncio.run(scan("absent")) is None


def test_the_demo_step_shows_and_checks_the_fallback_and_the_dead_letter(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sender_env(stack_env)
    sandbox = ServiceProcess(env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
    sender = ServiceProcess(env, tmp_path / "sender.log", "sender", "WHATSUP_SENDER_METRICS_PORT")
    sandbox.start()
    sender.start()
    try:
        assert whatsapp_demo.show(Settings.from_env(env))
    finally:
        sender.stop()
        sandbox.stop()
    shown = capsys.readouterr().out
    assert "queued(131047) -> sent" in shown and "code 131026" in shown
    assert "+5511955550001" not in shown  # numbers are masked


def test_two_replicas_share_the_rate_limit_and_never_send_a_key_twice(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    total = 480
    keys = [f"pair-{i}" for i in range(total)]
    messages = [outbound(k, f"+55118{i % 240:08d}") for i, k in enumerate(keys)]
    env = sender_env(stack_env, WHATSUP_SANDBOX_RATE_PER_S="80", WHATSUP_SANDBOX_CALLBACKS="false")
    sandbox = ServiceProcess(env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
    replicas = [
        ServiceProcess(
            {**env, "WHATSUP_SENDER_METRICS_PORT": str(free_port())},
            tmp_path / f"sender{i}.log",
            "sender",
            "WHATSUP_SENDER_METRICS_PORT",
        )
        for i in range(2)
    ]
    sandbox.start()
    try:
        for replica in replicas:
            replica.start()
        # Both replicas own partitions before the messages come, so both send.
        deadline = time.monotonic() + 60
        while not all(httpx.get(f"{r.url}/health", timeout=5).json().get("partitions") for r in replicas):
            assert time.monotonic() < deadline, "the replicas did not share the partitions"
            time.sleep(0.2)
        # The same keys twice on the topic, as a producer replaying its batch would put them.
        produce_outbound(stack_settings, messages + messages[:100])
        wait_for_sandbox(sandbox, total, timeout_s=60)
        time.sleep(1)
        stats = httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()
        received = Counter(m["biz_opaque_callback_data"] for m in sandbox_messages(sandbox))
        metrics = [httpx.get(f"{r.url}/metrics", timeout=10).text for r in replicas]
    finally:
        for replica in replicas:
            replica.stop()
        sandbox.stop()
    assert stats["answered"] == {"accepted": total}, "no 130429: the replicas paced each other"
    assert set(received) == set(keys) and max(received.values()) == 1
    sent = re.compile(r'^whatsup_whatsapp_sends_total\{code="",outcome="sent",provider="meta"\} (\S+)$', re.M)
    sent_by = [sum(float(v) for v in sent.findall(m)) for m in metrics]
    assert sum(sent_by) == total and min(sent_by) > 0, sent_by


def test_the_twilio_fallback_demo_step_opens_the_breaker_and_reaches_twilio(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    env = sender_env(stack_env, WHATSUP_SENDER_BACKOFF_BASE_S="0.05", WHATSUP_SENDER_BREAKER_FAILURES="3")
    env.update(
        WHATSUP_TWILIO_ACCOUNT_SID=SID,
        WHATSUP_TWILIO_AUTH_TOKEN=AUTH,
        WHATSUP_TWILIO_FROM="+15550001111",
        WHATSUP_TWILIO_API_URL=f"http://127.0.0.1:{env['WHATSUP_SANDBOX_TWILIO_PORT']}",
    )
    sandbox = ServiceProcess(env, tmp_path / "sandbox.log", "sandbox", "WHATSUP_SANDBOX_META_PORT")
    sender = ServiceProcess(env, tmp_path / "sender.log", "sender", "WHATSUP_SENDER_METRICS_PORT")
    sandbox.start()
    sender.start()
    try:
        assert fallback_demo.show(Settings.from_env(env), timeout_s=60)
        twilio_log = httpx.get(f"{env['WHATSUP_TWILIO_API_URL']}/_sandbox/messages", timeout=5).json()
    finally:
        sender.stop()
        sandbox.stop()
    shown = capsys.readouterr().out
    assert "meta:queued(131000)" in shown and "twilio:sent" in shown and "breaker: open" in shown
    assert [m["to"] for m in twilio_log["messages"]] == [fallback_demo.DRIVER]
    assert fallback_demo.DRIVER not in shown  # numbers are masked
