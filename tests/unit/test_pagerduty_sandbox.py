"""The PagerDuty Events API sandbox answers as the documentation says: 202, 400 with errors, 429, faults."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from connectors.sandbox.pagerduty import PagerDutySandbox, validate
from tests.unit.sandbox_helpers import sandboxes

KEY = "R" * 32


def trigger(**overrides: Any) -> dict[str, Any]:
    event: dict[str, Any] = {
        "routing_key": KEY,
        "event_action": "trigger",
        "dedup_key": "worker-down",
        "payload": {"summary": "worker down", "source": "prometheus", "severity": "critical"},
    }
    return {**event, **overrides}


def run(test: Callable[[PagerDutySandbox, httpx.AsyncClient, str], Awaitable[None]]) -> None:
    async def main() -> None:
        async with sandboxes() as boxes, httpx.AsyncClient(timeout=5) as http:
            await test(boxes.pagerduty, http, f"{boxes.pagerduty_url}/v2/enqueue")

    asyncio.run(main())


def test_a_trigger_opens_one_incident_a_repeat_adds_to_it_and_resolve_closes_it() -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        first = await http.post(url, json=trigger())
        assert first.status_code == 202
        assert first.json() == {"status": "success", "message": "Event processed", "dedup_key": "worker-down"}
        assert (await http.post(url, json=trigger())).status_code == 202
        resolve = {"routing_key": KEY, "event_action": "resolve", "dedup_key": "worker-down"}
        assert (await http.post(url, json=resolve)).status_code == 202
        [incident] = box.incidents.values()
        assert (incident.status, incident.triggers, incident.resolves) == ("resolved", 2, 1)
        listed = (await http.get(url.replace("/v2/enqueue", "/_sandbox/incidents"))).json()
        assert listed["incidents"][0]["status"] == "resolved"

    run(test)


def test_a_trigger_without_a_dedup_key_gets_a_new_one() -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        answer = await http.post(url, json=trigger(dedup_key=None))
        assert answer.status_code == 202
        assert len(answer.json()["dedup_key"]) == 32
        assert answer.json()["dedup_key"] in box.incidents

    run(test)


@pytest.mark.parametrize(
    ("event", "error"),
    [
        (trigger(routing_key="short"), "Length of 'routing_key' is incorrect"),
        (trigger(event_action="page"), "'event_action' is invalid"),
        (trigger(payload={"source": "p", "severity": "critical"}), "'payload.summary' is missing"),
        (trigger(payload={"summary": "x" * 1025, "source": "p", "severity": "info"}), "longer than 1024"),
        (trigger(payload={"summary": "s", "severity": "info"}), "'payload.source' is missing"),
        (trigger(payload={"summary": "s", "source": "p", "severity": "page"}), "'payload.severity'"),
        ({"routing_key": KEY, "event_action": "resolve"}, "'dedup_key' is missing"),
        ([1, 2], "must be a JSON object"),
    ],
)
def test_an_invalid_event_is_answered_400_with_the_reason_and_changes_nothing(event: Any, error: str) -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        answer = await http.post(url, json=event)
        assert answer.status_code == 400
        body = answer.json()
        assert body["status"] == "invalid event"
        assert any(error in message for message in body["errors"]), body
        assert box.events == [] and box.incidents == {}

    run(test)


def test_a_body_that_is_not_json_is_an_invalid_event() -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        answer = await http.post(url, content=b"{not json", headers={"content-type": "application/json"})
        assert answer.status_code == 400
        assert answer.json()["errors"] == ["Event object is not valid JSON"]

    run(test)


def test_more_events_than_the_rate_on_one_key_are_answered_429_and_other_keys_go_on() -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        box.rate_per_min = 3
        codes = [(await http.post(url, json=trigger())).status_code for _ in range(5)]
        assert codes == [202, 202, 202, 429, 429]
        assert (await http.post(url, json=trigger(routing_key="S" * 32))).status_code == 202
        assert box.incidents["worker-down"].triggers == 4  # 3 on KEY; the other key's trigger joined it

    run(test)


def test_injected_faults_answer_5xx_then_the_api_recovers() -> None:
    async def test(box: PagerDutySandbox, http: httpx.AsyncClient, url: str) -> None:
        faults = url.replace("/v2/enqueue", "/_sandbox/faults")
        await http.post(faults, json={"http_status": 503, "times": 2})
        codes = [(await http.post(url, json=trigger())).status_code for _ in range(3)]
        assert codes == [503, 503, 202]
        assert box.answered == {"503": 2, "202": 1}
        assert len(box.events) == 1

    run(test)


def test_validate_accepts_a_minimal_acknowledge() -> None:
    assert validate({"routing_key": KEY, "event_action": "acknowledge", "dedup_key": "d"}) == []
