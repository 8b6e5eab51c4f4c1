"""Benchmark suite ``quality``: a simulated delivery fleet through a real worker, scored against its truth.

The fleet is played in real time (records go out when the wall clock reaches their upload time), so the
worker's wall-clock timers and the pings' event time agree, as in production. History pings (riders
without deliveries in the hour before) go first, so the learned cell speeds have something to say; then the
worker is taught what drivers delivering in the half hour before showed (``teach_past``), so the fleet's
first stops meet a worker that knows what a worker in service knows.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from base import topics
from base.kafka import make_producer
from base.settings import Settings
from benches.eta_replay import replay_etas
from benches.harness import Result, Suite, bench_settings, start_worker, wait_healthy, worker_env
from benches.quality_score import QualityReport, score_etas, score_run
from simulator.deliveries import (
    DeliverySimConfig,
    history_pings,
    past_deliveries,
    simulate_deliveries,
)
from simulator.deliveries_run import PlayReport, collect, play
from streams.deliveries.cell_speeds import CellSpeed, cell_key
from streams.deliveries.eta import EtaConfig
from streams.deliveries.speeds import CellSpeedReplica, encode_sum, samples_topic_name, tail_changelog

QUALITY_NOTES = (
    "The simulator plays the fleet into Kafka in real time; event time and the wall clock are one clock. "
    "Detection delay is the alert's `detected_at` minus the true start of the stop (its first fix), so it "
    "includes the stall time N itself; the target is N + 30 s.",
    "Precision counts distinct alert ids; an alert matches an episode of the same driver and delivery whose "
    "span holds its `started_at` (90 s of slack before the first fix). Episodes cut short by the end of the "
    "run are left out, and alerts for them too.",
    "Late-batch alerts: stall alerts whose start lies in a stop whose pings were uploaded minutes later.",
    "ETA error: every `deliveries.eta` update for an in-transit delivery that arrived, against the true "
    "arrival; the baseline is computed at the same moments from the driver's newest fix, straight line at "
    "the run's own average straight-line speed (tuned on the answer, so generous to the baseline).",
    "`ETA held in transit`: every 30 s from the pickup to the arrival, the newest ETA published by then "
    "(what the customer holds) and the baseline from the newest fix, against the true arrival. Each minute "
    "in transit counts the same; the published updates crowd where the ETA moves (a stop that goes on, a "
    "jam).",
    "Before the fleet, the worker is taught what 200 other drivers delivering (with the same kinds of "
    "episode) in the half hour before showed it: the harness runs the tracking agent's ETA step over their "
    "day and sends the riding, dwell and ride samples it gives to `cell-speed-samples`, the topic the "
    "tracking agent teaches through. Without it the fleet's first stops, all in its first minutes, would "
    "meet a worker that has never seen a stop end, which no worker in service is.",
    "`ETA core replayed`: the harness cleans the same pings and runs the tracking agent's ETA step "
    "(`estimates.on_fix`, from the learned speeds, dwell and ride calibration as snapshotted from the "
    "worker's changelog before the fleet, learning from the fleet as the worker does) over them and the "
    "delivery events in upload order, and scores what it would publish the same way. It measures the ETA core"
    " apart from the agent that publishes; the rows above it measure what the worker actually published.",
    "The machine was shared with other work while this ran.",
)


@dataclass
class QualityRun:
    """One run of the quality benchmark: the fleet, what was played, and the score."""

    config: DeliverySimConfig
    played: PlayReport
    report: QualityReport
    deliveries: int
    episodes: dict[str, int]
    days: list[Any]
    alerts: list[dict[str, Any]]
    etas: list[dict[str, Any]]
    # The ETA core run by the harness over the same fixes, with the speeds the worker learned from history.
    replayed: tuple[int, float, float, float]
    # What the worker had learned when the fleet started (cell speeds, dwell, ride calibration).
    learned: dict[str, CellSpeed]


def wait_for_records(settings: Settings, topic: str, count: int, timeout_s: float = 300.0) -> None:
    """Wait until a topic holds at least ``count`` records (summed over its partitions)."""
    consumer = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "quality-watermarks"})
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            total = sum(
                consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
            )
            if total >= count:
                return
            time.sleep(1.0)
    finally:
        consumer.close()
    raise RuntimeError(f"{topic} did not reach {count} records within {timeout_s} s")


def snapshot_speeds(
    settings: Settings,
    timeout_s: float = 30.0,
    until: Callable[[CellSpeedReplica], bool] | None = None,
) -> CellSpeedReplica:
    """Copy the speeds the worker has learned so far, once its changelog stops growing for 3 s (and, given
    ``until``, once what it holds satisfies it: failing if it never does within ``timeout_s``)."""
    replica = CellSpeedReplica()
    changelog = f"{settings.app_id}-cell_speeds-changelog"

    async def follow() -> bool:
        task = asyncio.create_task(
            tail_changelog(changelog, settings.partitions, settings.kafka_bootstrap, replica, poll_ms=200)
        )
        deadline, seen, stable_since = time.monotonic() + timeout_s, -1, time.monotonic()
        done = False
        while time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            if until is not None and not until(replica):
                continue
            if len(replica.speeds) != seen:
                seen, stable_since = len(replica.speeds), time.monotonic()
            elif seen > 0 and time.monotonic() - stable_since >= 3.0:
                done = True
                break
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return done

    if not asyncio.run(follow()) and until is not None:
        raise RuntimeError(f"the learned speeds did not reach what was taught within {timeout_s} s")
    return replica


def teach_past(
    settings: Settings, config: DeliverySimConfig, learned: CellSpeedReplica, drivers: int, minutes: float
) -> CellSpeedReplica:
    """Teach the worker how fast riders rode, how long stops in transit lasted, and how long riding took
    against the ETAs, for ``drivers`` delivering in the ``minutes`` before the fleet, as its agents would
    have had it run then; return what it has learned after.

    The past days go through the tracking agent's ETA step (``replay_etas``, with the speeds the worker has
    learned) in this process, and the riding, dwell and ride samples it gives go to ``cell-speed-samples``,
    the topic the tracking agent teaches through: played through the worker, pings minutes old
    would page dispatchers about drivers whose pings are only queued.
    """
    taught: list[tuple[str, float, int]] = []
    past = past_deliveries(config, drivers, minutes)
    replay_etas(past, dict(learned.speeds), EtaConfig.from_settings(settings), taught)
    producer = make_producer(settings)
    topic = samples_topic_name(settings)
    for key, value, ts in taught:
        producer.produce(topic, key=key.encode(), value=encode_sum(value, 1, ts))
        producer.poll(0)
    if producer.flush(60) != 0:
        raise RuntimeError("learned samples left undelivered after 60 s")
    wanted = Counter(key for key, _, _ in taught)

    def holds_all(replica: CellSpeedReplica) -> bool:
        learned = {key: replica.speeds.get(key) for key in wanted}
        return all(v is not None and v.weight >= 0.95 * wanted[k] for k, v in learned.items())

    return snapshot_speeds(settings, timeout_s=60.0, until=holds_all)


def run_fleet(
    settings: Settings,
    config: DeliverySimConfig,
    history_drivers: int,
    history_minutes: float,
    drain_s: float,
    past_minutes: float = 0.0,
) -> QualityRun:
    """Play a fleet (and its history) into ``settings``' topics, wait for the worker, score the outputs.

    With ``past_minutes``, the history's drivers also deliver before the fleet and the worker is taught what
    their day showed (``teach_past``), as a worker in service has learned.
    """
    history = history_pings(config, history_drivers, history_minutes)
    # History first, and cleaned before the fleet starts: a backlog in the clean stage delays live pings,
    # and the offline timer would page for drivers whose pings are only queued.
    play([], settings, history=history)
    clean = topics.qualified(topics.GPS_PINGS_CLEAN, settings.topic_prefix)
    wait_for_records(settings, clean, int(len(history) * 0.97))
    learned = snapshot_speeds(settings)
    if past_minutes > 0:
        learned = teach_past(settings, config, learned, history_drivers, past_minutes)
    # The fleet starts now, however long the history took: played late, it would all arrive at once.
    config = replace(config, start_ms=int(time.time() * 1000) + 5_000)
    days = simulate_deliveries(config)
    played = play(days, settings)
    time.sleep(drain_s)  # the last pings and the timer's last tick
    prefix = settings.topic_prefix
    alerts = collect(settings, topics.qualified(topics.ALERTS, prefix), "Alert")
    etas = collect(settings, topics.qualified(topics.DELIVERIES_ETA, prefix), "EtaUpdate")
    report = score_run(
        days,
        alerts,
        etas,
        offline_ms=int(config.offline_minutes * 60_000),
        stall_ms=int(config.stall_minutes * 60_000),
        end_ms=config.start_ms + int(config.minutes * 60_000),
    )
    episodes: dict[str, int] = {}
    for day in days:
        for ep in day.episodes:
            episodes[ep.kind] = episodes.get(ep.kind, 0) + 1
    deliveries = sum(len(d.deliveries) for d in days)
    eta_config = EtaConfig.from_settings(settings)
    replayed = score_etas(days, replay_etas(days, dict(learned.speeds), eta_config))
    return QualityRun(
        config, played, report, deliveries, episodes, days, alerts, etas, replayed, dict(learned.speeds)
    )


def replica_memory(cells: int = 1_500) -> tuple[float, float]:
    """Return (MiB, bytes per key) of a replica holding every hour of the week for ``cells`` cells."""
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    replica = CellSpeedReplica()
    base = 0x87A8100C0FFFFFF
    for c in range(cells):
        for how in range(168):
            replica.speeds[cell_key(base + (c << 40), how)] = CellSpeed(
                7.0 + how / 100, 12.0, 1_790_000_000_000
            )
    used = sum(s.size_diff for s in tracemalloc.take_snapshot().compare_to(before, "filename"))
    tracemalloc.stop()
    keys = len(replica.speeds)
    return used / 2**20, used / keys


def results_of(run: QualityRun) -> list[Result]:
    """Turn a run into benchmark results."""
    r, cfg = run.report, run.config
    stall, offline, frozen = r.kinds["stall"], r.kinds["offline"], r.kinds["frozen_gps"]
    target_s = cfg.stall_minutes * 60 + 30
    n, ours, base, _ = run.replayed
    nan = float("nan")
    lag = run.played.max_lag_ms
    late = run.episodes.get("late_batch", 0)
    fleet = f"{cfg.drivers} drivers, {cfg.minutes:g} min, {run.deliveries} deliveries"
    return [
        Result("stall precision", stall.precision, "ratio", f"{stall.alerts} stall alerts; target >= 0.95"),
        Result("stall recall", stall.recall, "ratio", f"{stall.expected} stall episodes; target >= 0.95"),
        Result("stall median detection delay", stall.median_delay_s, "s", f"target <= {target_s:.0f} s"),
        Result("alerts from late batches", r.late_batch_alerts, "alerts", f"{late} late batches; target 0"),
        Result("duplicate alerts per episode", r.duplicates, "alerts", "extra distinct ids; target 0"),
        Result("alert records resent with the same id", r.resent_records, "records", "at-least-once resends"),
        Result("offline precision", offline.precision, "ratio", f"{offline.alerts} offline alerts"),
        Result("offline recall", offline.recall, "ratio", f"{offline.expected} offline gaps"),
        Result("frozen GPS recall", frozen.recall, "ratio", f"{frozen.expected} frozen episodes"),
        Result("ETA mean absolute error", r.eta_mae_s, "s", f"{r.eta_updates} updates in transit"),
        Result(
            "baseline ETA mean absolute error",
            r.baseline_mae_s,
            "s",
            f"straight line at {r.baseline_speed_mps:.2f} m/s",
        ),
        Result("ETA error below baseline", r.eta_improvement, "ratio", "1 - ours/baseline; target >= 0.30"),
        Result(
            "ETA held in transit: mean absolute error",
            r.held_mae_s,
            "s",
            f"{r.held_moments} moments, every 30 s from pickup to arrival",
        ),
        Result("ETA held in transit: baseline error", r.baseline_held_mae_s, "s", "same moments"),
        Result(
            "ETA held in transit: error below baseline",
            r.held_improvement,
            "ratio",
            "each minute in transit counts the same",
        ),
        Result(
            "ETA core replayed: mean absolute error", ours, "s", f"{n} updates; speeds learned by the worker"
        ),
        Result("ETA core replayed: baseline error", base, "s", "same moments, same baseline"),
        Result(
            "ETA core replayed: error below baseline",
            1 - ours / base if base else nan,
            "ratio",
            "target >= 0.30",
        ),
        Result("fleet", cfg.drivers, "drivers", fleet),
        Result("pings played", run.played.pings, "pings", f"max lag behind schedule {lag} ms"),
    ]


def bench_quality(base: Settings, quick: bool) -> list[Result]:
    """Run the fleet through one real worker and score it."""
    mib, per_key = replica_memory()
    settings = bench_settings(base, "quality")
    env = worker_env(
        settings,
        WHATSUP_STALL_MINUTES=str(settings.stall_minutes),
        WHATSUP_OFFLINE_MINUTES=str(settings.offline_minutes),
    )
    worker = start_worker(env)
    try:
        wait_healthy(f"http://127.0.0.1:{env['WHATSUP_WEB_PORT']}", worker)
        config = DeliverySimConfig(
            drivers=100 if quick else 500,
            minutes=12 if quick else 18,
            start_ms=int(time.time() * 1000) + 10_000,
            stall_minutes=settings.stall_minutes,
            offline_minutes=settings.offline_minutes,
        )
        run = run_fleet(
            settings, config, history_drivers=200, history_minutes=45, drain_s=20, past_minutes=30
        )
    finally:
        worker.terminate()
        worker.wait(60)
    results = results_of(run)
    results.append(
        Result(
            "learned-speed replica memory", mib, "MiB", f"1,500 cells x 168 hours, {per_key:.0f} B per key"
        )
    )
    return results


SUITE = Suite("quality", "Alert and ETA quality against a simulated fleet", bench_quality, QUALITY_NOTES)
