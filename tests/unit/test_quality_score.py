"""Scoring against the simulator's truth: perfect answers score perfectly, and each kind of mistake counts."""

from __future__ import annotations

from typing import Any

import pytest

from benches.quality_score import HELD_STEP_MS, score_held, score_run
from simulator.deliveries import Episode
from tests.unit.test_delivery_simulator import CONFIG, M_MS, N_MS, days

END = CONFIG.start_ms + int(CONFIG.minutes * 60_000)
LIMITS = {"offline_ms": int(M_MS), "stall_ms": int(N_MS), "end_ms": END}


def _alert(ep: Episode, kind: str, n: int = 0, delay_s: float = 320.0) -> dict[str, Any]:
    return {
        "alert_id": f"{ep.driver_id}:{kind}:{ep.start_ms}:{n}",
        "kind": kind,
        "driver_id": ep.driver_id,
        "delivery_id": ep.delivery_id,
        "started_at": ep.start_ms + 5000,
        "detected_at": ep.start_ms + int(delay_s * 1000),
    }


def _perfect_alerts() -> list[dict[str, Any]]:
    return [_alert(e, e.expected_alert) for d in days() for e in d.episodes if e.expected_alert]


def _perfect_etas() -> list[dict[str, Any]]:
    etas = []
    for day in days():
        picked = {e["delivery_id"]: e["ts"] for e in day.events if e["type"] == "picked_up"}
        for d in day.deliveries:
            if d.arrived_at is not None:
                for at in range(picked[d.delivery_id], d.arrived_at, 60_000):
                    etas.append({"delivery_id": d.delivery_id, "eta": d.arrived_at, "computed_at": at})
    return etas


def test_perfect_answers_score_perfectly() -> None:
    report = score_run(list(days()), _perfect_alerts(), _perfect_etas(), **LIMITS)
    for kind in ("stall", "offline", "frozen_gps"):
        score = report.kinds[kind]
        assert score.expected > 0
        assert (score.precision, score.recall, score.duplicates) == (1.0, 1.0, 0)
    assert report.kinds["stall"].median_delay_s == pytest.approx(320.0)
    assert (report.late_batch_alerts, report.resent_records, report.duplicates) == (0, 0, 0)
    assert report.eta_updates > 50
    assert report.eta_mae_s == 0.0 and report.baseline_mae_s > 60
    assert report.eta_improvement == 1.0
    assert report.held_moments > report.eta_updates, "every 30 s in transit, between updates too"
    assert report.held_mae_s == 0.0 and report.baseline_held_mae_s > 60 and report.held_improvement == 1.0
    assert 2.0 < report.baseline_speed_mps < 10.0


def test_mistakes_are_counted() -> None:
    alerts = _perfect_alerts()
    stalls = [e for d in days() for e in d.episodes if e.kind == "stall" and e.complete]
    waits = [e for d in days() for e in d.episodes if e.kind == "wait_pickup"]
    late = [e for d in days() for e in d.episodes if e.kind == "late_batch"]
    missed = stalls[0]
    alerts = [a for a in alerts if not (a["driver_id"] == missed.driver_id and a["kind"] == "stall")]
    alerts += [_alert(stalls[1], "stall", n=1), _alert(waits[0], "stall"), _alert(late[0], "stall")]
    alerts.append(dict(alerts[0]))  # the same alert id resent
    # Phones falling silent as the run ends: not held against anyone.
    last = days()[0]
    alerts.append({**_alert(last.episodes[0], "offline"), "alert_id": "end", "started_at": END - 5000})
    alerts.append({**_alert(last.episodes[0], "stall"), "alert_id": "end2", "started_at": END - 100_000})
    report = score_run(list(days()), alerts, [], **LIMITS)
    stall = report.kinds["stall"]
    assert stall.recall == pytest.approx((stall.expected - 1) / stall.expected)
    assert stall.duplicates == 1
    assert stall.alerts == stall.expected - 1 + 1 + 2
    assert stall.precision == pytest.approx((stall.expected - 1) / stall.alerts)
    assert report.late_batch_alerts == 1
    assert report.resent_records == 1
    assert report.missed == [missed]
    assert {a["delivery_id"] for a in report.false_alerts} == {waits[0].delivery_id, late[0].delivery_id}
    assert report.eta_updates == 0


def test_the_eta_held_counts_each_moment_in_transit_once() -> None:
    """One early ETA a minute off, held for the whole ride, then a burst of right ones just before the
    arrival: the updates score mostly right, the ETA held mostly a minute off."""
    fleet = list(days())
    etas = []
    expected = []
    for day in fleet:
        picked = {e["delivery_id"]: e["ts"] for e in day.events if e["type"] == "picked_up"}
        for d in day.deliveries:
            if d.arrived_at is None or d.arrived_at - picked[d.delivery_id] < 5 * HELD_STEP_MS:
                continue
            start = picked[d.delivery_id]
            etas.append({"delivery_id": d.delivery_id, "eta": d.arrived_at + 60_000, "computed_at": start})
            late = d.arrived_at - HELD_STEP_MS // 3
            etas += [
                {"delivery_id": d.delivery_id, "eta": d.arrived_at, "computed_at": late + i} for i in range(9)
            ]
            moments = range(start + HELD_STEP_MS, d.arrived_at, HELD_STEP_MS)
            expected += [60.0 if at < late else 0.0 for at in moments]
    assert len(expected) > 20
    report = score_run(fleet, [], etas, **LIMITS)
    assert report.eta_mae_s == pytest.approx(6.0), "one update in ten was a minute off"
    moments, held, _ = score_held(fleet, etas)
    assert moments == len(expected) and held == pytest.approx(sum(expected) / len(expected))
    assert held > 50.0
