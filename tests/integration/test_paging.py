"""A worker killed with SIGKILL pages the on-call once, through the real Prometheus and Alertmanager, and the
page resolves when the worker is back.

Prometheus scrapes a real worker with the project's rules (WhatsUpWorkerDown's ``for`` shortened to 2 s in
this test's copy), Alertmanager routes with the project's config (waits shortened), and PagerDuty is the
Events API sandbox, which answers the first event 503 so Alertmanager's retry is part of the proof.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from connectors.sandbox.pagerduty import PagerDutySandbox
from connectors.sandbox.run import pagerduty_in_thread
from loadtest.monitoring import Alertmanager, Prometheus, rules_with_for
from tests.integration.stack import WorkerProcess, wait_until

ROUTING_KEY = "P" * 32
RULE = "WhatsUpWorkerDown"


@pytest.fixture()
def paging(tmp_path: Path) -> Iterator[tuple[PagerDutySandbox, Alertmanager]]:
    with pagerduty_in_thread() as (box, url):
        manager = Alertmanager(tmp_path / "alertmanager", url, ROUTING_KEY)
        manager.start()
        try:
            yield box, manager
        finally:
            manager.stop()


def test_a_killed_worker_pages_once_and_the_page_resolves_when_it_is_back(
    worker: WorkerProcess,
    paging: tuple[PagerDutySandbox, Alertmanager],
    stack_env: dict[str, str],
    tmp_path: Path,
) -> None:
    box, manager = paging
    prometheus = Prometheus(
        tmp_path / "prometheus",
        {"whatsup-worker": [worker.url.removeprefix("http://")]},
        alertmanager=manager.address,
        rules_dir=rules_with_for(tmp_path / "rules", {RULE: "2s"}),
    )
    prometheus.start()
    replacement = WorkerProcess(stack_env, tmp_path / "worker-again.log")
    try:
        prometheus.wait_for('up{job="whatsup-worker"} == 1')
        time.sleep(3)  # longer than the rule's `for`: a healthy worker pages nobody
        assert box.events == []

        box.faults.append(503)  # PagerDuty's first answer is an error: Alertmanager must retry
        worker.kill()
        wait_until(lambda: box.incidents, "a PagerDuty incident", timeout_s=60)
        time.sleep(6)  # three group intervals: an unchanged alert is not paged again
        [incident] = box.incidents.values()
        assert (incident.status, incident.triggers) == ("triggered", 1), box.events
        [event] = box.events
        assert event["routing_key"] == ROUTING_KEY
        assert event["payload"]["severity"] == "critical"
        assert event["payload"]["summary"].startswith(f"{RULE}: ")
        assert event["client"] == "WhatsUp Alertmanager"
        assert box.answered == {"503": 1, "202": 1}
        assert [a["labels"]["alertname"] for a in manager.alerts()] == [RULE]

        replacement.start()
        wait_until(lambda: incident.status == "resolved", "the incident resolved", timeout_s=60)
        assert [event["event_action"] for event in box.events] == ["trigger", "resolve"]
        assert {event["dedup_key"] for event in box.events} == {incident.dedup_key}
        assert len(box.incidents) == 1
    finally:
        replacement.stop()
        prometheus.stop()
