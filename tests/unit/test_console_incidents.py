"""Incidents: alerts opening them, dispatchers and the pipeline closing them, in any order of arrival."""

from __future__ import annotations

from typing import Any

import pytest

from streams.console.fleet import QueryError
from streams.console.incidents import IncidentQuery, Incidents

T0 = 1_700_000_000_000


def alert(alert_id: str, kind: str = "stall", detected_at: int = T0, driver: str = "drv-1") -> dict[str, Any]:
    return {
        "alert_id": alert_id,
        "kind": kind,
        "driver_id": driver,
        "delivery_id": None,
        "started_at": detected_at - 60_000,
        "detected_at": detected_at,
        "lat": -23.56,
        "lon": -46.65,
        "h3_r9": 0,
        "severity": "warning",
        "detail": "",
    }


def action(alert_id: str, what: str, by: str = "ana", ts: int = T0 + 1_000, note: str = "") -> dict[str, Any]:
    return {
        "action_id": f"{what}-{ts}",
        "alert_id": alert_id,
        "action": what,
        "by": by,
        "ts": ts,
        "note": note,
    }


def test_an_alert_opens_an_incident_once() -> None:
    incidents = Incidents()
    assert incidents.on_alert(alert("stall-1")) is not None
    assert incidents.on_alert(alert("stall-1")) is None  # the same alert again: the same incident
    assert incidents.open_count() == 1


def test_acknowledge_then_resolve_keeps_who_and_when() -> None:
    incidents = Incidents()
    incidents.on_alert(alert("stall-1"))
    acked = incidents.on_action(action("stall-1", "ack", note="calling him"))
    assert acked is not None and acked.state == "acknowledged"
    assert acked.acknowledged == {"by": "ana", "at": T0 + 1_000, "note": "calling him"}
    assert incidents.on_action(action("stall-1", "ack", by="bia")) is None  # a second ack changes nothing
    resolved = incidents.on_action(action("stall-1", "resolve", by="bia", ts=T0 + 5_000))
    assert (
        resolved is not None
        and resolved.state == "resolved"
        and resolved.resolved
        == {
            "by": "bia",
            "at": T0 + 5_000,
            "note": "",
        }
    )
    assert incidents.on_action(action("stall-1", "ack")) is None  # resolved stays resolved
    assert incidents.open_count() == 0


def test_the_pipeline_resolves_a_stall_by_itself() -> None:
    incidents = Incidents()
    incidents.on_alert(alert("stall-1"))
    closed = incidents.on_alert(alert("stall-1-resolved", kind="stall_resolved", detected_at=T0 + 9_000))
    assert closed is not None and closed.state == "resolved" and closed.resolved is not None
    assert closed.resolved["by"] == "pipeline"


def test_an_action_read_before_its_alert_is_applied_when_the_alert_comes() -> None:
    incidents = Incidents()
    assert incidents.on_action(action("offline-1", "ack")) is None
    opened = incidents.on_alert(alert("offline-1", kind="offline"))
    assert opened is not None and opened.state == "acknowledged"


def test_pages_are_newest_first_and_filter_by_state_kind_and_time() -> None:
    incidents = Incidents()
    for i in range(250):
        incidents.on_alert(
            alert(f"a-{i:03d}", kind=("stall", "offline", "late_risk")[i % 3], detected_at=T0 + i)
        )
    for i in range(0, 250, 5):
        incidents.on_action(action(f"a-{i:03d}", "ack"))
    seen, cursor = [], None
    while True:
        page, cursor = incidents.page(
            IncidentQuery.parse({"limit": "40", **({"cursor": cursor} if cursor else {})})
        )
        seen += [i.alert_id for i in page]
        if cursor is None:
            break
    assert seen == [f"a-{i:03d}" for i in reversed(range(250))]
    acked, _ = incidents.page(IncidentQuery.parse({"state": "acknowledged", "kind": "stall", "limit": "500"}))
    assert {i.alert_id for i in acked} == {f"a-{i:03d}" for i in range(0, 250, 15)}
    recent, _ = incidents.page(IncidentQuery.parse({"since": str(T0 + 200)}))
    assert len(recent) == 50


def test_old_incidents_and_orphan_actions_are_forgotten() -> None:
    incidents = Incidents()
    incidents.on_alert(alert("old", detected_at=T0))
    incidents.on_alert(alert("new", detected_at=T0 + 10_000))
    incidents.on_action(action("never-came", "ack", ts=T0))
    incidents.forget_before(T0 + 5_000)
    assert set(incidents.by_id) == {"new"} and not incidents.pending


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"state": "closed"}, "state"),
        ({"kind": "stall_resolved"}, "kind"),
        ({"since": "yesterday"}, "since"),
        ({"limit": "600"}, "limit"),
        ({"cursor": "!"}, "cursor"),
        ({"driver": "x"}, "driver"),
    ],
)
def test_every_bad_alert_parameter_is_named(params: dict[str, str], param: str) -> None:
    with pytest.raises(QueryError) as refused:
        IncidentQuery.parse(params)
    assert refused.value.param == param
