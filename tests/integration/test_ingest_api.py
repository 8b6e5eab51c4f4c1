"""POST /v1/pings on a real worker: each bad request gets its precise answer and nothing reaches Kafka."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.settings import Settings
from base.tokens import issue_driver_token
from schemas.codecs import codec
from tests.integration.stack import WorkerProcess, read_topic


def _raw_high_watermarks(settings: Settings) -> int:
    name = topics.qualified(topics.GPS_PINGS_RAW, settings.topic_prefix)
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "hw"})
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        return sum(consumer.get_watermark_offsets(TopicPartition(name, p), timeout=10)[1] for p in partitions)
    finally:
        consumer.close()


def _ping(i: int, **extra: Any) -> dict[str, Any]:
    return {
        "ping_id": f"p{i}",
        "ts": int(time.time() * 1000) - 1000,
        "lat": -23.55,
        "lon": -46.63,
        "seq": i,
        **extra,
    }


def test_bad_requests_get_precise_answers_and_reach_nothing(
    stack_settings: Settings, worker: WorkerProcess
) -> None:
    secret = stack_settings.token_secret
    assert secret is not None
    token = issue_driver_token(secret, "driver-a", ttl_s=600)
    auth = {"Authorization": f"Bearer {token}"}
    url = f"{worker.url}/v1/pings"
    before = _raw_high_watermarks(stack_settings)

    cases: list[tuple[dict[str, Any], int, str]] = [
        ({"json": {"pings": [_ping(1)]}}, 401, "missing_token"),
        (
            {"json": {"pings": [_ping(1)]}, "headers": {"Authorization": "Bearer x.y.z"}},
            401,
            "malformed_token",
        ),
        (
            {
                "json": {"pings": [_ping(1)]},
                "headers": {
                    "Authorization": f"Bearer {issue_driver_token('not-the-secret', 'driver-a', 600)}"
                },
            },
            401,
            "bad_signature",
        ),
        (
            {
                "json": {"pings": [_ping(1)]},
                "headers": {
                    "Authorization": f"Bearer {issue_driver_token(secret, 'driver-a', 60, now_s=1000)}"
                },
            },
            401,
            "expired_token",
        ),
        ({"json": {"driver_id": "driver-b", "pings": [_ping(1)]}, "headers": auth}, 400, "driver_id"),
        ({"json": {"pings": [_ping(1, driver_id="driver-b")]}, "headers": auth}, 400, "pings[0].driver_id"),
        ({"json": {"pings": [_ping(i) for i in range(501)]}, "headers": auth}, 413, "pings"),
        ({"content": b'{"pings": [', "headers": auth}, 400, "body"),
        ({"json": {"pings": [_ping(1), _ping(2, lat="-23.5")]}, "headers": auth}, 400, "pings[1].lat"),
    ]
    for kwargs, status, detail in cases:
        answer = httpx.post(url, timeout=10, **kwargs)
        assert answer.status_code == status, (kwargs, answer.text)
        body = answer.json()
        if status == 401:
            assert body["error"] == detail
        else:
            assert answer.headers["X-Bad-Field"] == detail
            assert detail in body["message"]

    time.sleep(1)
    assert _raw_high_watermarks(stack_settings) == before


def test_a_good_batch_lands_keyed_by_the_tokens_driver(
    stack_settings: Settings, worker: WorkerProcess
) -> None:
    assert stack_settings.token_secret is not None
    token = issue_driver_token(stack_settings.token_secret, "driver-a", ttl_s=600)
    pings = [_ping(1), _ping(2, lat=0, lon=0), _ping(3, accuracy_m=5.5, ts="2026-01-01T00:00:00Z")]
    started = time.perf_counter()
    answer = httpx.post(
        f"{worker.url}/v1/pings",
        json={"pings": pings},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert answer.status_code == 202
    assert time.perf_counter() - started < 5  # the answer never waits for the stream stages
    assert answer.json() == {
        "accepted": 1,
        "rejected": [
            {"index": 1, "reason": "null_island", "detail": "fix at (0, 0)"},
            {"index": 2, "reason": "too_old", "detail": answer.json()["rejected"][1]["detail"]},
        ],
    }
    raw = read_topic(
        stack_settings,
        topics.qualified(topics.GPS_PINGS_RAW, stack_settings.topic_prefix),
        "GpsPing",
        until=lambda r: len(r) >= 3,
    )
    assert {(r.key, r.value["driver_id"], r.value["ping_id"]) for r in raw} == {
        (b"driver-a", "driver-a", f"p{i}") for i in (1, 2, 3)
    }
    rejected = read_topic(
        stack_settings,
        topics.qualified(topics.GPS_PINGS_REJECTED, stack_settings.topic_prefix),
        "RejectedPing",
        until=lambda r: len(r) >= 2,
    )
    assert sorted(r.value["reason"] for r in rejected) == ["null_island", "too_old"]
    assert codec("GpsPing")  # the same codec the API used decodes what it wrote


@pytest.fixture()
def stingy_worker(stack_env: dict[str, str], stack_settings: Settings, tmp_path: Any) -> Any:
    process = WorkerProcess(
        {**stack_env, "WHATSUP_INGEST_BURST": "2", "WHATSUP_INGEST_RATE_PER_S": "0.5"},
        tmp_path / "stingy.log",
    )
    process.start()
    yield process
    process.stop()


def test_a_driver_over_its_rate_is_told_when_to_retry(
    stack_settings: Settings, stingy_worker: WorkerProcess
) -> None:
    assert stack_settings.token_secret is not None
    headers = {"Authorization": f"Bearer {issue_driver_token(stack_settings.token_secret, 'driver-r', 600)}"}
    other = {"Authorization": f"Bearer {issue_driver_token(stack_settings.token_secret, 'driver-s', 600)}"}
    url = f"{stingy_worker.url}/v1/pings"
    statuses = [httpx.post(url, json={"pings": [_ping(i)]}, headers=headers).status_code for i in range(3)]
    assert statuses == [202, 202, 429]
    limited = httpx.post(url, json={"pings": [_ping(9)]}, headers=headers)
    assert limited.status_code == 429 and int(limited.headers["Retry-After"]) >= 1
    assert httpx.post(url, json={"pings": [_ping(1)]}, headers=other).status_code == 202
