"""A small simulated delivery fleet through a real worker: the quality benchmark's targets, asserted.

Every duration is shrunk together (stall time 45 s, offline time 24 s, stall radius 30 m, jams crawling
at 3-3.5 m/s, red lights of 5-12 s, short legs), so the fleet plays in three minutes of real time. The
fleet runs once per module; each test judges one group of targets.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import pytest

from base.kafka import create_topics
from base.settings import Settings
from benches.quality import QualityRun, run_fleet
from simulator.deliveries import DeliverySimConfig
from tests.integration.stack import WorkerProcess, free_port

N_S, M_S = 45, 24
SCALED = {
    "WHATSUP_STALL_MINUTES": str(N_S / 60),
    "WHATSUP_STALL_STEP_S": "5",
    "WHATSUP_STALL_GRACE_S": "5",
    "WHATSUP_STALL_HORIZON_MINUTES": "0.25",
    "WHATSUP_STALL_RADIUS_M": "30",
    "WHATSUP_OFFLINE_MINUTES": str(M_S / 60),
    "WHATSUP_TICK_INTERVAL_S": "1",
    "WHATSUP_ETA_MIN_CHANGE_S": "15",
    "WHATSUP_ETA_MAX_INTERVAL_S": "30",
}


@pytest.fixture(scope="module")
def fleet(
    kafka_bootstrap: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QualityRun]:
    """Play 60 drivers through one real worker and score what it said."""
    run, tmp = uuid.uuid4().hex[:8], tmp_path_factory.mktemp("quality")
    env = {
        "WHATSUP_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "WHATSUP_REDIS_URL": redis_url,
        "WHATSUP_TOPIC_PREFIX": f"q{run}.",
        "WHATSUP_APP_ID": f"whatsup-q{run}",
        "WHATSUP_DATA_DIR": str(tmp / "var"),
        "WHATSUP_WEB_PORT": str(free_port()),
        "WHATSUP_PARTITIONS": "4",
        **SCALED,
    }
    settings = Settings.from_env(env)
    create_topics(settings)
    worker = WorkerProcess(env, tmp / "worker.log")
    worker.start()
    try:
        # Riding speeds follow the hour of day (rush hours are slow), and with them how many deliveries arrive
        # and how many ETAs there are to score: the fleet rides in midday traffic whenever the test runs.
        config = DeliverySimConfig(
            drivers=60,
            minutes=4.0,
            interval_s=2.0,
            start_ms=int(time.time() * 1000) + 3000,
            seed=11,
            radius_m=3000,
            pickup_m=(100, 200),
            dropoff_m=(700, 1000),
            inject_after_m=(200, 260),
            stall_minutes=N_S / 60,
            offline_minutes=M_S / 60,
            light_s=(5, 12),
            frozen_s=(22, 26),
            jam_mps=(3.0, 3.5),
            weights=(0.10, 0.25, 0.10, 0.10, 0.10, 0.10, 0.15, 0.10),
            traffic_hour=12,
        )
        yield run_fleet(settings, config, history_drivers=40, history_minutes=10, drain_s=8, past_minutes=4)
    finally:
        worker.stop()


def test_every_episode_is_alerted_once_and_in_time(fleet: QualityRun) -> None:
    report = fleet.report
    stall, offline, frozen = report.kinds["stall"], report.kinds["offline"], report.kinds["frozen_gps"]
    assert stall.expected >= 5 and offline.expected >= 5 and frozen.expected >= 3, fleet.episodes
    assert stall.recall >= 0.95, report.missed
    assert stall.median_delay_s <= N_S + 30, stall.delays_s
    assert offline.recall >= 0.95 and offline.precision >= 0.95, report.false_alerts
    assert frozen.recall >= 0.95 and frozen.precision >= 0.95, report.false_alerts
    assert report.duplicates == 0


def test_no_false_stalls_and_nothing_from_late_batches(fleet: QualityRun) -> None:
    report = fleet.report
    assert report.kinds["stall"].precision >= 0.95, report.false_alerts
    assert report.late_batch_alerts == 0


def test_the_worker_publishes_etas_for_deliveries_in_transit(fleet: QualityRun) -> None:
    report = fleet.report
    assert report.eta_updates >= 20, "too few ETA updates to score"
    arrived = {d.delivery_id for day in fleet.days for d in day.deliveries if d.arrived_at is not None}
    estimated = {u["delivery_id"] for u in fleet.etas if u["method"] != "actual"}
    assert len(arrived & estimated) >= 0.9 * len(arrived)


def test_the_worker_was_taught_how_long_the_past_stops_in_transit_lasted(fleet: QualityRun) -> None:
    # Read back from the worker's changelog before the fleet started: the fleet's own stops had taught
    # nothing yet, so every dwell it holds came from the past, through cell-speed-samples.
    taught = {key: v for key, v in fleet.learned.items() if key.startswith("dwell:")}
    assert taught.get("dwell:60") is not None and taught["dwell:60"].weight >= 5, taught
    # The past's stops in transit (stalls and waits of 1.4 to 1.9 times the 45 s stall time) went on a few
    # seconds to about half a minute beyond the first threshold.
    assert 0 < taught["dwell:60"].speed_mps < 40, taught


@pytest.mark.xfail(
    strict=True,
    reason="this four-minute fleet puts an episode in nine deliveries of ten, 200-260 m after the pickup: "
    "stalls, jams and long waits add minutes nothing seen before them foresees, and the baseline's speed is "
    "the run's own average over those stops (offline, the same fleet scores about 0.06). The target is "
    "measured on the benchmark's 500 drivers over 18 minutes (docs/BENCHMARKS.md)",
)
def test_published_etas_beat_the_straight_line_by_30_percent(fleet: QualityRun) -> None:
    assert fleet.report.eta_improvement >= 0.30, (fleet.report.eta_mae_s, fleet.report.baseline_mae_s)
