"""The simulator's ground truth agrees with the pure rules, ping by ping, for any seed and ping interval."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

import pytest

from simulator.model import Faults, SimConfig, SimPing, simulate
from streams.pings import rules
from streams.pings.state import DriverPingState

END = 1_790_000_000_000


def _judge_in_upload_order(config: SimConfig) -> tuple[Counter[tuple[str, str]], Counter[tuple[str, str]]]:
    expected: Counter[tuple[str, str]] = Counter()
    got: Counter[tuple[str, str]] = Counter()
    received = END + 5_000
    for run in simulate(config):
        state = DriverPingState()
        for sim in run.pings():
            payload = sim.payload
            ping = {
                **payload,
                "driver_id": run.driver_id,
                "device_ts": payload["ts"],
                "source": "app",
                "received_ts": received,
            }
            verdict = rules.evaluate(ping, state, rules.RuleConfig(), received)
            expected[(run.driver_id, sim.expected)] += 1
            got[(run.driver_id, "clean" if isinstance(verdict, dict) else str(verdict.reason))] += 1
    return expected, got


@pytest.mark.parametrize(("seed", "interval"), [(1, 1.0), (2, 5.0), (3, 10.0), (4, 30.0)])
def test_every_driver_gets_exactly_the_expected_verdicts(seed: int, interval: float) -> None:
    config = SimConfig(drivers=40, minutes=60, interval_s=interval, end_ms=END, seed=seed)
    expected, got = _judge_in_upload_order(config)
    assert expected == got
    kinds = {verdict for _, verdict in expected}
    assert {"clean", "duplicate", "implausible_speed", "low_accuracy"} <= kinds


def test_a_run_without_faults_is_all_clean_and_moves_like_a_motorcycle() -> None:
    config = SimConfig(drivers=10, minutes=20, end_ms=END, faults=Faults.none())
    runs = simulate(config)
    for run in runs:
        pings = run.pings()
        assert {p.expected for p in pings} == {"clean"}
        steps = pairwise(pings)
        speeds = [
            rules.haversine_m(a.payload["lat"], a.payload["lon"], b.payload["lat"], b.payload["lon"])
            / ((b.payload["ts"] - a.payload["ts"]) / 1000)
            for a, b in steps
        ]
        assert max(speeds) < 20.0  # noise included, never faster than a motorcycle in town
        assert all(abs(p.payload["lat"] - config.center[0]) < 0.2 for p in pings)


def _late_uploads(pings: list[SimPing]) -> int:
    newest, late = -1, 0
    for p in pings:
        late += p.payload["ts"] < newest
        newest = max(newest, p.payload["ts"])
    return late


LONG_BACKLOGS = Faults(offline=1.0, shuffle=1.0, replay=1.0, lost=0.1)


def test_long_shuffled_backlogs_with_lost_pings_are_deduplicated_exactly() -> None:
    # Offline gaps of up to 600 pings, uploaded shuffled with a tenth of them never sent, then replayed:
    # far more seq runs than whole ranges could hold, and every replay must still be a duplicate.
    config = SimConfig(
        drivers=12,
        minutes=45,
        interval_s=1.0,
        end_ms=END,
        seed=7,
        max_gap_ticks=600,
        faults=LONG_BACKLOGS,
    )
    late = [_late_uploads(run.pings()) for run in simulate(config)]
    assert min(late) > 20 and max(late) > 300
    expected, got = _judge_in_upload_order(config)
    assert expected == got
    assert sum(n for (_, verdict), n in expected.items() if verdict == "duplicate") > 1000
