"""Incidents: the alerts a dispatcher works through, and what dispatchers did about them (pure).

An incident opens with an alert record (stall, offline, late_risk, frozen_gps, and for assignments
unaccepted, declined, delivery_failed, guardrail) and is known by its alert id.
A dispatcher acknowledges it or resolves it (``alerts.actions``); the pipeline resolves a stall or an
offline by itself with a ``*_resolved`` alert whose id is the opening alert's id plus ``-resolved``. An
action on an incident not seen (yet) is kept and applied when its alert arrives, so the order in which a
console reads the two topics does not matter.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.console.fleet import QueryError, check_known, decode_cursor, page_of, parse_choices, parse_limit

STATES = ("open", "acknowledged", "resolved")
OPENING = (
    "stall",
    "offline",
    "late_risk",
    "frozen_gps",
    "unaccepted",
    "declined",
    "delivery_failed",
    "guardrail",
)
RESOLVED_SUFFIX = "-resolved"
ACTIONS = ("ack", "resolve")


@dataclass
class Incident:
    """One alert and what became of it."""

    alert: dict[str, Any]
    state: str = "open"
    acknowledged: dict[str, Any] | None = None  # by, at, note
    resolved: dict[str, Any] | None = None  # by (a dispatcher, or "pipeline"), at, note

    @property
    def alert_id(self) -> str:
        """Return the incident's id, its opening alert's."""
        return str(self.alert["alert_id"])

    def public(self) -> dict[str, Any]:
        """Return the incident as the API shows it."""
        a = self.alert
        return {
            "alert_id": a["alert_id"],
            "kind": a["kind"],
            "driver_id": a["driver_id"],
            "delivery_id": a.get("delivery_id"),
            "started_at": a["started_at"],
            "detected_at": a["detected_at"],
            "lat": a["lat"],
            "lon": a["lon"],
            "severity": a.get("severity", "warning"),
            "detail": a.get("detail", ""),
            "state": self.state,
            "acknowledged": self.acknowledged,
            "resolved": self.resolved,
        }


def apply_action(incident: Incident, action: Mapping[str, Any]) -> bool:
    """Apply a dispatcher's action; return whether the incident changed (a resolved one stays resolved)."""
    done = {"by": action["by"], "at": action["ts"], "note": action.get("note") or ""}
    if incident.state == "resolved":
        return False
    if action["action"] == "resolve":
        incident.state, incident.resolved = "resolved", done
        return True
    if incident.state == "open":
        incident.state, incident.acknowledged = "acknowledged", done
        return True
    return False


@dataclass(frozen=True)
class IncidentQuery:
    """What ``GET /v1/alerts`` asks for."""

    states: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    since: int | None = None
    limit: int = 100
    after: tuple[int, str] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> IncidentQuery:
        """Read the query string; a bad parameter raises QueryError naming it."""
        check_known(params, ("state", "kind", "since", "limit", "cursor"))
        since = params.get("since")
        if since and not (since.isascii() and since.isdigit() and len(since) <= 19):
            raise QueryError("since", "epoch milliseconds, a whole number")
        cursor = params.get("cursor")
        return cls(
            states=parse_choices("state", params.get("state"), STATES),
            kinds=parse_choices("kind", params.get("kind"), OPENING),
            since=int(since) if since else None,
            limit=parse_limit(params.get("limit")),
            after=decode_cursor(cursor) if cursor else None,
        )

    def admits(self, incident: Incident) -> bool:
        """Tell whether an incident passes the filters (not the cursor)."""
        return (
            (not self.states or incident.state in self.states)
            and (not self.kinds or incident.alert["kind"] in self.kinds)
            and (self.since is None or incident.alert["detected_at"] >= self.since)
        )


def newest_first(incident: Incident) -> tuple[int, str]:
    """Return an incident's place in a page: the newest detection first."""
    return -int(incident.alert["detected_at"]), incident.alert_id


@dataclass
class Incidents:
    """Every incident of the console's window, with the actions that arrived before their alert."""

    by_id: dict[str, Incident] = field(default_factory=dict)
    pending: dict[str, list[Mapping[str, Any]]] = field(default_factory=dict)

    def on_alert(self, alert: Mapping[str, Any]) -> Incident | None:
        """Take an alert record; return the incident it opened or changed, None if nothing changed."""
        alert_id = str(alert["alert_id"])
        if alert["kind"] in OPENING:
            if alert_id in self.by_id:
                return None  # the same incident again (the alert id is its idempotency key)
            incident = Incident(dict(alert))
            self.by_id[alert_id] = incident
            for action in self.pending.pop(alert_id, []):
                apply_action(incident, action)
            return incident
        if alert_id.endswith(RESOLVED_SUFFIX):
            opened = self.by_id.get(alert_id.removesuffix(RESOLVED_SUFFIX))
            if opened is not None and opened.state != "resolved":
                opened.state = "resolved"
                opened.resolved = {"by": "pipeline", "at": alert["detected_at"], "note": alert["kind"]}
                return opened
        return None

    def on_action(self, action: Mapping[str, Any]) -> Incident | None:
        """Take a dispatcher's action; return the incident it changed, None if nothing changed."""
        incident = self.by_id.get(str(action["alert_id"]))
        if incident is None:
            self.pending.setdefault(str(action["alert_id"]), []).append(action)
            return None
        return incident if apply_action(incident, action) else None

    def page(self, query: IncidentQuery) -> tuple[list[Incident], str | None]:
        """Return one page of incidents, newest first, and the cursor of the next page."""
        after = query.after
        candidates = (
            i for i in self.by_id.values() if query.admits(i) and (after is None or newest_first(i) > after)
        )
        return page_of(candidates, newest_first, query.limit)

    def forget_before(self, ts_ms: int) -> None:
        """Drop incidents detected before ``ts_ms``, and actions waiting for alerts that will not come."""
        for alert_id in [k for k, i in self.by_id.items() if i.alert["detected_at"] < ts_ms]:
            del self.by_id[alert_id]
        for alert_id in [k for k, actions in self.pending.items() if actions[-1]["ts"] < ts_ms]:
            del self.pending[alert_id]

    def open_count(self) -> int:
        """Return how many incidents are not resolved."""
        return sum(1 for i in self.by_id.values() if i.state != "resolved")
