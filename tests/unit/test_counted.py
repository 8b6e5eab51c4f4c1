"""Every intake answer is counted, the unexpected 500 included (the error-rate alert reads the counter)."""

from __future__ import annotations

import asyncio
import logging

import pytest
from prometheus_client import REGISTRY

from streams.ingest.counted import answered, answered_now
from streams.ingest.reply import Reply


def counted(route: str, status: str) -> float:
    value = REGISTRY.get_sample_value("whatsup_http_requests_total", {"route": route, "status": status})
    return value or 0.0


async def _fails() -> Reply:
    raise KeyError("a bug the handler did not foresee")


async def _accepts() -> Reply:
    return Reply(202, {"accepted": 1})


def test_a_handler_that_raises_is_answered_500_and_counted(caplog: pytest.LogCaptureFixture) -> None:
    before = counted("/test/route", "500")
    with caplog.at_level(logging.ERROR, logger="streams.ingest.counted"):
        reply = asyncio.run(answered("/test/route", _fails()))
    assert reply.status == 500 and reply.reason == "internal" and isinstance(reply.body, dict)
    assert "KeyError" not in str(reply.body)  # the caller learns nothing of the internals; the log does
    assert any("KeyError" in (r.exc_text or "") for r in caplog.records)
    assert counted("/test/route", "500") == before + 1


def test_every_other_answer_is_counted_by_status() -> None:
    before = counted("/test/route", "202"), counted("/test/route", "400")
    assert asyncio.run(answered("/test/route", _accepts())).status == 202
    answered_now("/test/route", Reply(400, {"error": "bad_request"}, reason="bad_request"))
    assert (counted("/test/route", "202"), counted("/test/route", "400")) == (before[0] + 1, before[1] + 1)
