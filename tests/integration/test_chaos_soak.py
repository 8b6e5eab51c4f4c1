"""The chaos soak, shortened: one fault of each kind during a small fleet's load, nothing lost or doubled.

Two ingest processes, two workers, the sink, the sender and the Meta sandbox run a 150-driver fleet with
deliveries, and WhatsApp messages for the sender, for two and a half minutes; meanwhile a worker is killed
with SIGKILL and started again, the broker is restarted, the sink's engine is down for 15 s, Redis for
15 s, and the Meta sandbox answers 500 for 20 s. The broker and Redis are this module's own, since they
are restarted. The full soak (ten minutes at 1,000 pings/s, a kill every 30 s) is ``whatsup bench --only
soak``.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from base.settings import Settings
from loadtest.chaos import ChaosPlan
from loadtest.fleet import FleetConfig
from loadtest.fleet_run import FleetRun, run_fleet
from tests.integration.stack import ROOT, free_port, run_script

PLAN = ChaosPlan(
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


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, str]]]:
    """A broker and a Redis for this module alone; yields their scripts' environments."""
    kafka = {
        "KAFKA_DATA_DIR": str(tmp_path_factory.mktemp("chaos-kafka")),
        "KAFKA_PORT": str(free_port()),
        "KAFKA_CONTROLLER_PORT": str(free_port()),
    }
    redis = {"REDIS_DATA_DIR": str(tmp_path_factory.mktemp("chaos-redis")), "REDIS_PORT": str(free_port())}
    run_script(ROOT / "deploy/kafka/kafka.sh", "start", kafka)
    try:
        run_script(ROOT / "deploy/redis/redis.sh", "start", redis)
        try:
            yield {"kafka": kafka, "redis": redis}
        finally:
            run_script(ROOT / "deploy/redis/redis.sh", "stop", redis)
    finally:
        run_script(ROOT / "deploy/kafka/kafka.sh", "stop", kafka)


def test_one_fault_of_each_kind_loses_and_doubles_nothing(
    own_stack: dict[str, dict[str, str]], tmp_path: Path
) -> None:
    settings = Settings.from_env(
        {
            "WHATSUP_KAFKA_BOOTSTRAP": f"127.0.0.1:{own_stack['kafka']['KAFKA_PORT']}",
            "WHATSUP_REDIS_URL": f"redis://127.0.0.1:{own_stack['redis']['REDIS_PORT']}/0",
            "WHATSUP_DATA_DIR": str(tmp_path / "var"),
            "WHATSUP_PARTITIONS": "4",
        }
    )
    run = FleetRun(FleetConfig(drivers=150, minutes=2.5), warmup_s=10.0, ingest=2, workers=2, chaos=PLAN)
    outcome = run_fleet(settings, run, "chaos", say=print, stack=own_stack)
    soak = outcome.soak
    assert soak is not None
    print(f"soak: faults {soak.faults}; exits restarted {soak.restarts}; tracebacks {soak.tracebacks}")
    assert [kind for _, kind, _ in soak.faults] == [
        "kill_worker",
        "broker_restart",
        "sink_down",
        "redis_down",
        "meta_errors",
    ], soak.faults
    assert soak.repair_errors == []
    assert outcome.topics is not None and outcome.topics.ok, outcome.topics
    assert outcome.clickhouse is not None and outcome.clickhouse.ok, outcome.clickhouse
    assert len(outcome.load.accepted) > 1_000
    assert soak.messages_acked > 1_000 and soak.messages_lost == 0 and soak.messages_twice == 0, soak
    assert soak.alerts_twice == 0
    assert soak.control_lost > 0, "the negative control lost nothing: the accounting cannot see a loss"
