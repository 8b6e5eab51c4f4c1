"""The fleet's planned traffic and the accounting of a run against its ground truth."""

from __future__ import annotations

import collections
import json

from loadtest.fleet import EVENTS, MAX_BACKLOG_BATCH, PINGS, FleetConfig, event_body, ping_body, plan
from loadtest.verify import account
from simulator.model import Faults
from streams.deliveries.intake import parse_events
from streams.pings.intake import parse_batch
from streams.pings.rules import RuleConfig

CONFIG = FleetConfig(drivers=40, minutes=20.0, seed=3)


def test_phones_upload_on_their_own_period_in_bounded_batches() -> None:
    uploads = plan(CONFIG)
    assert [u.due_ms for u in uploads] == sorted(u.due_ms for u in uploads)
    period = int(CONFIG.upload_s * 1000)
    phases: dict[int, set[int]] = collections.defaultdict(set)
    for upload in uploads:
        if upload.kind == PINGS:
            assert 0 < len(upload.pings) <= MAX_BACKLOG_BATCH
            phases[upload.driver].add(upload.due_ms % period)
            assert all(
                ts <= upload.due_ms for _, ts, *_ in upload.pings if abs(ts - upload.due_ms) < 3_600_000
            )
    assert len(phases) == CONFIG.drivers
    assert all(len(p) == 1 for p in phases.values()), "a phone uploads at one phase of the period"
    assert len({next(iter(p)) for p in phases.values()}) > CONFIG.drivers // 2, "phones are not in step"


def test_the_fleet_carries_deliveries_and_the_phones_faults_in_their_shares() -> None:
    uploads = plan(CONFIG)
    sent = collections.Counter(p[0] for u in uploads if u.kind == PINGS for p in u.pings)
    pings = len(sent)
    resent = sum(n - 1 for n in sent.values())
    # Duplicates (2% of pings) plus replayed backlog batches: a few percent, never most.
    assert 0.01 * pings < resent < 0.15 * pings
    kinds = collections.Counter(u.event["type"] for u in uploads if u.kind == EVENTS and u.event)
    assert {"assigned", "picked_up", "en_route", "arrived", "delivered"} <= kinds.keys()
    # Fixes a minute per driver: one every fix_s (late uploads and silences aside).
    assert 0.6 * CONFIG.drivers * CONFIG.minutes * 12 < pings <= CONFIG.drivers * CONFIG.minutes * 12


def test_faults_are_what_the_rules_refuse() -> None:
    faults = Faults(duplicate=0, spike=0, null_island=0.5, low_accuracy=0, future_clock=0.5, rollover=0)
    config = FleetConfig(drivers=3, minutes=3.0, faults=faults)
    rules = RuleConfig()
    start = 1_800_000_000_000
    reasons = collections.Counter()
    for upload in plan(config):
        if upload.kind != PINGS:
            continue
        received = start + upload.due_ms
        intake = parse_batch(
            ping_body(upload.pings, start), config.driver_id(upload.driver), received, rules, 500
        )
        reasons.update(str(rejection.reason) for _, rejection in intake.rejected)
    assert set(reasons) == {"null_island", "future_timestamp"}


def test_bodies_are_what_the_api_takes() -> None:
    start = 1_800_000_000_000
    uploads = plan(FleetConfig(drivers=2, minutes=5.0))
    for upload in uploads:
        if upload.kind == PINGS:
            body = ping_body(upload.pings, start)
            intake = parse_batch(body, "fleet-00000", start + upload.due_ms, RuleConfig(), 500)
            assert [p["ping_id"] for p in intake.pings] == [p[0] for p in upload.pings]
        else:
            assert upload.event is not None
            (event,) = parse_events(event_body(upload.event, start), "key:x", 500)
            assert event["ts"] == start + upload.event["ts"]
            assert "upload_at" not in json.loads(event_body(upload.event, start))


def test_accounting_finds_lost_doubled_and_foreign_verdicts() -> None:
    accepted = ["a", "b", "b", "c"]
    clean = collections.Counter({"a": 1, "b": 1})
    rejected = collections.Counter({"b": 1})
    result = account(accepted, clean, rejected, sent=set())
    assert (result.lost, result.clean_twice, result.extra) == (1, 0, 0)  # c has no verdict
    twice = account(["a"], collections.Counter({"a": 2}), collections.Counter(), sent=set())
    assert twice.clean_twice == 1 and not twice.ok
    foreign = account(["a"], collections.Counter({"a": 1, "z": 1}), collections.Counter(), sent=set())
    assert foreign.extra == 1
    # A ping whose upload got no answer may have landed: its verdict is no fault.
    unanswered = account(["a"], collections.Counter({"a": 1, "z": 1}), collections.Counter(), sent={"z"})
    assert unanswered.ok


def test_capacity_plans_processes_from_each_roles_cpu_per_ping() -> None:
    from benches.fleet import capacity, role_of
    from loadtest.fleet_run import FleetOutcome, FleetRun
    from loadtest.run import LoadReport

    outcome = FleetOutcome(FleetRun(FleetConfig(drivers=10)), LoadReport())
    outcome.pings_in_window = 1_000_000
    # 100 us per ping of ingest (two processes), 300 of worker, 100 of sink; the load generator is left out.
    outcome.cpu_s = {"ingest-1": 50.0, "ingest-2": 50.0, "worker-1": 300.0, "sink": 100.0, "loadgen": 999.0}
    assert role_of("ingest-2") == "ingest" and role_of("sink") == "sink"
    rows = {row.name: row for row in capacity(outcome)}
    big = rows["capacity: 100,000 drivers (20,000 pings/s)"]
    assert big.value == 20_000 * 500 / 1e6  # 10 busy cores
    # At 60% of a core each: 20,000 x 300 us = 6 cores of worker -> 10 workers, 20 partitions.
    assert "4 ingest, 4 sink, 10 worker processes, 20 partitions" in big.note
