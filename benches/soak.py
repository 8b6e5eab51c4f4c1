"""The ``soak`` suite of ``whatsup bench`` (``make soak``): the pipeline kept whole through repeated faults.

Ten measured minutes of a 5,000-driver fleet (1,000 fixes/s, with deliveries), WhatsApp messages for the
sender, signed Meta webhooks from registered drivers, two ingest processes and two workers, the sink and
the sender against the Meta sandbox; meanwhile a random worker is killed with SIGKILL and started again
every 30 s, the broker is restarted once, the sink's engine is down for 30 s, Redis for 30 s, and Meta
answers 5xx for 60 s (``loadtest/chaos.py``). Then the fleet's accounting (every accepted ping once in the
topics and in ClickHouse), the sender's (every acknowledged message once at the sandbox, by its own log),
the webhooks' (every notification answered 200 once on the raw events topic; each is retried as Meta
retries until it is answered 200), the alerts' (none twice under different ids), and a negative control (a
consumer that commits before it writes, which the accounting must catch losing). The suite fails when any
of these fails.
"""

from __future__ import annotations

import os
import uuid

from base.settings import Settings
from benches.harness import Result, Suite
from loadtest.chaos import ChaosPlan
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetOutcome, FleetRun, run_fleet
from loadtest.soak import own_stack

NOTES = (
    "Faults run on a schedule from the start of the measured window; a fault that repairs slowly delays the"
    " next. Killing a worker means SIGKILL and a new process at once (it rejoins the group and recovers its"
    " tables); the sink's engine is embedded chDB, so it is down while its process is.",
    "Lost and doubled are counted from the ground truth: the pings the API answered 202 for, and the"
    " messages the broker acknowledged. A ping whose upload got no answer (a connection cut by a restart) was"
    " promised nothing: it may land or not, but never twice.",
    "The negative control reads the same run's clean verdicts with a consumer that commits each batch before"
    " it writes it and crashes once in between; the soak fails unless the same accounting finds it lost"
    " records.",
    "Webhooks: 10 signed Meta notifications a second, each a text from one of 50 registered drivers, sent to"
    " the ingest processes and posted again (1 s, 2 s, 4 s ... 15 s apart) until answered 200, as Meta does;"
    " a 503 (Redis or Kafka down) is such a refusal. Each one answered 200 must be on `whatsapp.events.raw`"
    " exactly once. The sandbox posts its signed status callbacks to the same webhook, retrying refused ones:"
    " they are what the sender waits for before resending a send a crash left unconfirmed.",
)


def soak_run(quick: bool) -> FleetRun:
    """The full soak, or (quick) a short one with each fault once."""
    if quick:
        plan = ChaosPlan(
            kill_worker_every_s=15.0,
            max_worker_kills=1,
            broker_restart_at_s=35.0,
            sink_down_at_s=60.0,
            sink_down_s=15.0,
            redis_down_at_s=85.0,
            redis_down_s=15.0,
            meta_errors_at_s=105.0,
            meta_errors_s=20.0,
        )
        return FleetRun(FleetConfig(drivers=150, minutes=2.5), warmup_s=10.0, ingest=2, workers=2, chaos=plan)
    plan = ChaosPlan(
        broker_restart_at_s=75.0, sink_down_at_s=190.0, redis_down_at_s=310.0, meta_errors_at_s=430.0
    )
    return FleetRun(FleetConfig(drivers=5_000, minutes=11.0), warmup_s=60.0, ingest=2, workers=2, chaos=plan)


def _refusals(refusals: dict[str, int]) -> str:
    return ", ".join(f"{n:,} {what}" for what, n in sorted(refusals.items())) or "none"


def results(outcome: FleetOutcome) -> list[Result]:
    """The table rows of a soak."""
    soak, load = outcome.soak, outcome.load
    assert soak is not None and outcome.topics is not None and outcome.clickhouse is not None
    seconds = outcome.window[1] - outcome.window[0]
    kills = sum(1 for _, kind, _ in soak.faults if kind == "kill_worker")
    rows = [
        Result("pings accepted (202)", len(load.accepted), "pings", f"{len(load.accepted) / seconds:,.0f}/s"),
        Result(
            "faults injected",
            len(soak.faults),
            "faults",
            f"{kills} worker kills; repairs failed: {len(soak.repair_errors)}",
        ),
        Result("pings lost, topics", outcome.topics.lost, "pings", "accepted, no verdict"),
        Result(
            "pings doubled, topics",
            outcome.topics.clean_twice + outcome.topics.extra,
            "pings",
            "clean twice or unasked",
        ),
        Result("pings lost, ClickHouse", outcome.clickhouse.lost, "rows", "accepted, no row"),
        Result(
            "pings doubled, ClickHouse", outcome.clickhouse.clean_twice + outcome.clickhouse.extra, "rows", ""
        ),
        Result(
            "messages acknowledged by the broker",
            soak.messages_acked,
            "msgs",
            f"{soak.messages_unconfirmed} unconfirmed",
        ),
        Result("messages lost (not at the sandbox)", soak.messages_lost, "msgs", "by the sandbox's own log"),
        Result(
            "messages sent twice",
            soak.messages_twice,
            "msgs",
            "by the sandbox's own log" + (f": {', '.join(soak.twice_keys)}" if soak.twice_keys else ""),
        ),
        Result("alerts raised twice under different ids", soak.alerts_twice, "alerts", "ClickHouse alerts"),
        Result(
            "webhooks sent (signed, from registered drivers)",
            soak.webhooks.sent,
            "msgs",
            f"{soak.webhooks.attempts:,} attempts; not 200: {_refusals(soak.webhooks.refusals)}",
        ),
        Result("webhooks never answered 200", soak.webhooks.unanswered, "msgs", "retried as Meta retries"),
        Result("webhooks answered 200, not on the raw topic", soak.webhooks.lost, "msgs", "target 0"),
        Result("webhooks on the raw topic twice", soak.webhooks.twice, "msgs", "target 0"),
        Result("negative control: records lost", soak.control_lost, "records", "must be above 0"),
        Result("drained after the load", outcome.drained_s, "s", "every group's backlog 0"),
    ]
    rows.append(
        Result(
            "processes that exited on their own", len(soak.restarts), "exits", "; ".join(soak.restarts)[:200]
        )
    )
    for name, count in sorted(soak.tracebacks.items()):
        rows.append(
            Result(f"tracebacks logged, {name}", count, "lines", "errors with a stack, not a reason code")
        )
    return rows


def soak_suite(settings: Settings, quick: bool) -> list[Result]:
    """Run the soak on the local stack; fail when anything was lost, doubled or not caught."""
    load_start = os.getloadavg()[0]
    # A broker and a Redis of the soak's own: it restarts them, and the local stack may be serving others.
    with own_stack(settings, settings.data_dir / "bench" / f"soak-{uuid.uuid4().hex[:6]}") as (own, stack):
        outcome = run_fleet(own, soak_run(quick), "soak", stack=stack)
    rows = [Result("load average (1 min), suite start", load_start, "ratio", "2 cores"), *results(outcome)]
    rows.append(Result("load average (1 min), suite end", os.getloadavg()[0], "ratio", "2 cores"))
    soak, topics, clickhouse = outcome.soak, outcome.topics, outcome.clickhouse
    assert soak is not None and topics is not None and clickhouse is not None
    for at, kind, done in soak.faults:
        print(f"soak: {at:6.0f} s {kind:<15} {done}")
    if not (soak.ok and topics.ok and clickhouse.ok):
        for row in rows:
            print(f"{row.name:<52} {row.value:>14,.2f} {row.unit:<12} {row.note}")
        raise RuntimeError("the soak found records lost or doubled, a failed repair, or an uncaught control")
    return rows


SUITE = Suite("soak", "Faults: the chaos soak", soak_suite, NOTES)
