"""Pure parts of the sender: error classes, status order, breaker, backoff, payloads, message checks."""

from __future__ import annotations

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from connectors.sandbox.meta import validate
from connectors.whatsapp import status
from connectors.whatsapp.breaker import CLOSED, HALF_OPEN, OPEN, CircuitBreaker, backoff_delay
from connectors.whatsapp.cloud import meta_payload, parse_meta_error
from connectors.whatsapp.errors import (
    PermanentSendError,
    RateLimited,
    TransientSendError,
    WindowClosed,
    classify,
)
from connectors.whatsapp.twilio import parse_twilio_error
from tests.unit.sandbox_helpers import message


@pytest.mark.parametrize(
    ("provider", "http_status", "code", "expected"),
    [
        ("meta", 429, 130429, RateLimited),
        ("meta", 400, 131056, RateLimited),
        ("meta", 400, 80007, RateLimited),
        ("meta", 429, None, RateLimited),
        ("meta", 500, 131000, TransientSendError),
        ("meta", 503, None, TransientSendError),
        ("meta", 502, 2, TransientSendError),
        ("meta", None, None, TransientSendError),
        ("meta", 401, 190, TransientSendError),
        ("meta", 400, 131047, WindowClosed),
        ("meta", 400, 131026, PermanentSendError),
        ("meta", 400, 131051, PermanentSendError),
        ("meta", 400, 100, PermanentSendError),
        ("meta", 400, 131009, PermanentSendError),
        ("meta", 404, 132001, PermanentSendError),
        ("twilio", 429, 20429, RateLimited),
        ("twilio", 500, 20500, TransientSendError),
        ("twilio", 400, 63016, WindowClosed),
        ("twilio", 400, 21211, PermanentSendError),
        ("twilio", 401, 20003, TransientSendError),
    ],
)
def test_every_error_class(provider: str, http_status: int | None, code: int | None, expected: type) -> None:
    cls = classify(provider, http_status, code)
    assert cls is expected
    assert cls.retriable == (expected in (RateLimited, TransientSendError))


def test_meta_error_answers_are_parsed_with_details_and_retry_after() -> None:
    body = {
        "error": {
            "message": "(#131047) Re-engagement message",
            "code": 131047,
            "error_data": {"details": "24h"},
        }
    }
    error = parse_meta_error(httpx.Response(400, json=body, headers={"Retry-After": "7"}))
    assert isinstance(error, WindowClosed) and error.code == 131047 and "24h" in error.title
    assert error.retry_after_s == 7.0 and error.label == "131047"
    garbled = parse_meta_error(httpx.Response(502, text="<html>bad gateway</html>"))
    assert isinstance(garbled, TransientSendError) and garbled.code is None and garbled.label == "http_502"
    twilio = parse_twilio_error(httpx.Response(400, json={"code": 21211, "message": "bad To", "status": 400}))
    assert isinstance(twilio, PermanentSendError) and twilio.provider == "twilio"


def test_status_moves_forward_only() -> None:
    assert status.fold(["sent", "read", "delivered"]) == "read"
    assert status.fold(["queued", "sent", "delivered"]) == "delivered"
    assert status.fold(["sent", "failed", "sent"]) == "failed"
    assert status.fold(["failed", "delivered"]) == "delivered"
    assert status.fold(["read", "failed"]) == "read"
    assert status.fold(["queued", "queued"]) == "queued"
    with pytest.raises(ValueError):
        status.advance("sent", "bounced")


@given(st.lists(st.sampled_from(sorted(status.STATUSES)), min_size=1, max_size=12))
def test_a_late_status_never_undoes_read_or_delivered(events: list[str]) -> None:
    final = status.fold(events)
    if "read" in events:
        assert final == "read"
    elif "delivered" in events:
        assert final == "delivered"
    elif "failed" in events:
        assert final == "failed"


@given(st.permutations(["queued", "sent", "delivered", "read"]))
def test_the_order_of_arrival_does_not_matter_without_failures(events: list[str]) -> None:
    assert status.fold(events) == "read"


def test_breaker_opens_after_repeated_failures_and_probes_after_the_reset() -> None:
    now = [0.0]
    breaker = CircuitBreaker(failures=3, reset_s=10.0, clock=lambda: now[0])
    for _ in range(2):
        breaker.record_failure()
    assert breaker.state == CLOSED and breaker.allow()
    breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow() and breaker.retry_in() == 10.0
    now[0] = 10.0
    assert breaker.allow() and breaker.state == HALF_OPEN
    assert not breaker.allow()  # one probe at a time
    breaker.record_failure()
    assert breaker.state == OPEN and not breaker.allow()
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == CLOSED and breaker.consecutive == 0 and breaker.allow()


def test_a_success_resets_the_count_of_consecutive_failures() -> None:
    breaker = CircuitBreaker(failures=2, reset_s=1.0)
    breaker.record_failure()
    breaker.record_success()
    breaker.record_failure()
    assert breaker.state == CLOSED


@given(st.integers(1, 30), st.floats(0, 1))
def test_backoff_is_jittered_under_an_exponential_ceiling(attempt: int, r: float) -> None:
    delay = backoff_delay(attempt, base_s=0.5, cap_s=30.0, rand=lambda: r)
    assert 0.05 <= delay <= min(30.0, 0.5 * 2 ** (attempt - 1))


def test_backoff_grows_until_the_cap() -> None:
    top = [backoff_delay(a, 0.5, 30.0, lambda: 1.0) for a in range(1, 10)]
    assert top[:7] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0] and top[-1] == 30.0


@pytest.mark.parametrize(
    ("fields", "as_template", "kind"),
    [
        ({}, False, "text"),
        ({"buttons": ["Arrived", "Delivered", "Breakdown"]}, False, "interactive"),
        ({"template": "eta_changed", "params": ["12:30", "Av. Paulista"]}, True, "template"),
        ({"text": None, "template": "stall_check", "language": "es"}, True, "template"),
    ],
)
def test_meta_payloads_pass_the_documented_validation(fields: dict, as_template: bool, kind: str) -> None:
    msg = message("key-1", **fields)
    body = meta_payload(msg, as_template=as_template)
    assert validate(body)["type"] == kind
    assert body["biz_opaque_callback_data"] == "key-1"
    assert msg.starts_as_template() == (fields.get("text", "x") is None)


@pytest.mark.parametrize(
    ("fields", "title"),
    [
        ({"text": None}, "no_content"),
        ({"to": "5511987654321"}, "bad_recipient"),
        ({"buttons": ["a", "b", "c", "d"]}, "bad_buttons"),
        ({"buttons": ["x" * 21]}, "bad_buttons"),
        ({"text": "x" * 4097}, "text_too_long"),
    ],
)
def test_messages_no_provider_would_take_are_refused_before_sending(fields: dict, title: str) -> None:
    msg = message("k", **fields)
    if fields.get("text", "x") is None:
        msg = message("k", **fields).__class__(**{**msg.__dict__, "template": None})
    with pytest.raises(PermanentSendError) as caught:
        msg.check()
    assert caught.value.title == title


def test_text_falls_back_to_its_own_template_first() -> None:
    own = message("k", template="eta_changed")
    assert own.template == "eta_changed" and own.can_fall_back(as_template=False)
    assert not own.can_fall_back(as_template=True)
    assert message("k").template == "whatsup_update"
