"""Parsing a phone's batch: the contract is enforced field by field, and edge verdicts match the agent's."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest

from base.tokens import TokenError, VerifiedTokens, issue_driver_token, verify_driver_token
from streams.ingest.ratelimit import DriverRateLimiter
from streams.pings.intake import BadRequest, parse_batch
from streams.pings.rules import RuleConfig

NOW = 1_790_000_000_000
GOOD = {"ping_id": "p1", "ts": NOW - 1000, "lat": -23.55, "lon": -46.63}


def parse(body: Any, max_pings: int = 500) -> Any:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return parse_batch(raw, "driver-1", NOW, RuleConfig(), max_pings)


def test_a_good_batch_becomes_gps_pings_of_the_tokens_driver() -> None:
    intake = parse({"pings": [GOOD, {**GOOD, "ping_id": "p2", "ts": "2026-09-21T14:13:20Z", "seq": 7}]})
    assert [p["driver_id"] for p in intake.pings] == ["driver-1", "driver-1"]
    assert intake.pings[0]["received_ts"] == NOW and intake.pings[0]["source"] == "app"
    assert (
        intake.pings[1]["device_ts"] == 1_790_000_000_000 - 1_790_000_000_000 % 1
        and intake.pings[1]["seq"] == 7
    )
    assert intake.rejected == []


def test_iso_timestamps_are_read_as_utc_milliseconds() -> None:
    intake = parse({"pings": [{**GOOD, "ts": "2026-09-21T11:13:20.250-03:00"}]})
    assert intake.pings[0]["device_ts"] == NOW + 250


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        (b"{not json", "body", 400),
        (b'{"pings": [{"ping_id": "p", "ts": 1, "lat": NaN, "lon": 1}]}', "body", 400),
        ([1, 2], "body", 400),
        ({"pings": "x"}, "pings", 400),
        ({"driver_id": "someone-else", "pings": [GOOD]}, "driver_id", 400),
        ({"pings": [{**GOOD, "driver_id": "someone-else"}]}, "pings[0].driver_id", 400),
        ({"pings": [GOOD, {**GOOD, "lat": "-23.5"}]}, "pings[1].lat", 400),
        ({"pings": [{**GOOD, "lon": True}]}, "pings[0].lon", 400),
        ({"pings": [{**GOOD, "ts": "yesterday"}]}, "pings[0].ts", 400),
        ({"pings": [{**GOOD, "ts": "2026-09-21T12:00:00"}]}, "pings[0].ts", 400),
        ({"pings": [{**GOOD, "seq": -1}]}, "pings[0].seq", 400),
        ({"pings": [{**GOOD, "ping_id": ""}]}, "pings[0].ping_id", 400),
        ({"pings": [{k: v for k, v in GOOD.items() if k != "lat"}]}, "pings[0].lat", 400),
        ({"pings": [{**GOOD, "altitude": 3}]}, "pings[0].altitude", 400),
        ({"pings": [GOOD] * 501}, "pings", 413),
        ({"pings": [{**GOOD, "lat": 1e400}]}, "body", 400),
        (
            b'{"pings": [{"ping_id": "p", "ts": 1, "lat": 1' + b"1" * 400 + b', "lon": 1}]}',
            "pings[0].lat",
            400,
        ),
        ({"pings": [{**GOOD, "speed_mps": 10**400}]}, "pings[0].speed_mps", 400),
        (b'{"pings": [{"ping_id": "\\ud800", "ts": 1, "lat": 1, "lon": 1}]}', "pings[0].ping_id", 400),
        (b'{"pings": ' + b"[" * 100_000, "body", 400),
    ],
)
def test_a_body_breaking_the_contract_is_refused_naming_the_field(body: Any, field: str, status: int) -> None:
    with pytest.raises(BadRequest) as caught:
        parse(body)
    assert (caught.value.field, caught.value.status) == (field, status)


def test_pings_failing_stateless_rules_are_reported_with_their_reason() -> None:
    pings = [
        GOOD,
        {**GOOD, "ping_id": "p2", "lat": 0, "lon": 0},
        {**GOOD, "ping_id": "p3", "accuracy_m": 900},
    ]
    intake = parse({"pings": pings})
    assert [(i, str(r.reason)) for i, r in intake.rejected] == [(1, "null_island"), (2, "low_accuracy")]
    assert len(intake.pings) == 3  # all go on to the agent, which records the same verdicts


def test_tokens_carry_the_driver_and_expire() -> None:
    token = issue_driver_token("s3cret", "driver-9", ttl_s=60, now_s=1000)
    assert verify_driver_token("s3cret", token, now_s=1059) == "driver-9"
    for secret, now, reason in [("s3cret", 1060, "expired_token"), ("other", 1000, "bad_signature")]:
        with pytest.raises(TokenError) as caught:
            verify_driver_token(secret, token, now_s=now)
        assert caught.value.reason == reason


def test_a_token_with_a_changed_driver_is_refused() -> None:
    header, _, signature = issue_driver_token("s3cret", "driver-9", ttl_s=60, now_s=1000).split(".")
    forged_payload = issue_driver_token("attacker-key", "driver-1", ttl_s=60, now_s=1000).split(".")[1]
    with pytest.raises(TokenError) as caught:
        verify_driver_token("s3cret", f"{header}.{forged_payload}.{signature}", now_s=1000)
    assert caught.value.reason == "bad_signature"
    for garbage in ["", "a.b", "a.b.c", "....."]:
        with pytest.raises(TokenError):
            verify_driver_token("s3cret", garbage, now_s=1000)


def test_rate_limit_allows_a_burst_then_the_sustained_rate() -> None:
    limiter = DriverRateLimiter(rate_per_s=2.0, burst=3)
    assert [limiter.acquire("d", 0.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("d", 0.0) == pytest.approx(0.5)
    assert limiter.acquire("other", 0.0) == 0.0  # buckets are per driver
    assert limiter.acquire("d", 0.6) == 0.0


def test_rate_limiter_memory_is_bounded() -> None:
    limiter = DriverRateLimiter(rate_per_s=1.0, burst=1, max_drivers=100)
    for i in range(1000):
        limiter.acquire(f"d{i}", 0.0)
    assert len(limiter._buckets) == 100


def test_nothing_of_an_unsigned_token_is_parsed() -> None:
    header, _, signature = issue_driver_token("s3cret", "driver-9", ttl_s=60, now_s=1000).split(".")
    deep = base64.urlsafe_b64encode(b"[" * 5000).decode().rstrip("=")
    with pytest.raises(TokenError) as caught:
        verify_driver_token("s3cret", f"{header}.{deep}.{signature}", now_s=1000)
    assert caught.value.reason == "bad_signature"
    with pytest.raises(TokenError) as caught:
        verify_driver_token("s3cret", f"{header}.{deep}.{signature}!!", now_s=1000)
    assert caught.value.reason == "malformed_token"


def test_remembered_tokens_still_expire_and_a_changed_one_is_checked_afresh() -> None:
    tokens = VerifiedTokens("s3cret", size=2)
    token = issue_driver_token("s3cret", "driver-9", ttl_s=60, now_s=1000)
    assert tokens.driver_of(token, now_s=1010) == "driver-9"
    assert tokens.driver_of(token, now_s=1059) == "driver-9"
    with pytest.raises(TokenError) as expired:
        tokens.driver_of(token, now_s=1060)
    assert expired.value.reason == "expired_token"
    header, _, signature = token.split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"sub": "driver-1", "role": "driver", "exp": 9e9}).encode())
    with pytest.raises(TokenError) as bad:
        tokens.driver_of(f"{header}.{forged.decode().rstrip('=')}.{signature}", now_s=1010)
    assert bad.value.reason == "bad_signature"
    for n in range(5):
        tokens.driver_of(issue_driver_token("s3cret", f"d{n}", ttl_s=60, now_s=1000), now_s=1010)
    assert len(tokens._claims) == 2


def test_a_driver_id_no_encoder_can_write_is_refused_at_issue_and_at_check() -> None:
    with pytest.raises(TokenError) as at_issue:
        issue_driver_token("s3cret", "drv-\ud800", ttl_s=60)
    assert at_issue.value.reason == "bad_driver_id"
    with pytest.raises(TokenError):
        issue_driver_token("s3cret", "", ttl_s=60)

    # A token signed with the right secret by some other tool, naming a lone surrogate: refused as a token.
    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = b64(json.dumps({"sub": "drv-\ud800", "role": "driver", "iat": 0, "exp": 2**40}).encode())
    signing_input = f"{header}.{claims}"
    signature = hmac.new(b"s3cret", signing_input.encode(), hashlib.sha256).digest()
    with pytest.raises(TokenError) as at_check:
        verify_driver_token("s3cret", f"{signing_input}.{b64(signature)}")
    assert at_check.value.reason == "malformed_token"
