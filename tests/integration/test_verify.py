"""The fleet verifier reads the verdict topics to their end: a verdict arriving after the expected count
was reached still fails the check (a negative control for the ground-truth tests)."""

from __future__ import annotations

import threading
import time

from base import topics
from base.kafka import DeliveringProducer, create_topics
from base.settings import Settings
from schemas.codecs import codec
from simulator.verify import collect_verdicts, compare


def _clean(ping_id: str, driver: str, lat: float) -> bytes:
    return codec("CleanPing").encode(
        {
            "ping_id": ping_id,
            "driver_id": driver,
            "device_ts": 1_790_000_000_000,
            "lat": lat,
            "lon": -46.6,
            "accuracy_m": 5.0,
            "speed_mps": None,
            "heading": None,
            "battery": None,
            "seq": None,
            "source": "app",
            "received_ts": 1_790_000_000_500,
            "h3_r9": 0,
            "h3_r7": 0,
            "step_m": 0.0,
            "derived_speed_mps": None,
            "late": False,
            "processed_ts": 1_790_000_000_500,
        }
    )


def test_a_verdict_that_arrives_after_the_expected_count_is_caught(stack_settings: Settings) -> None:
    create_topics(stack_settings)
    clean = topics.qualified(topics.GPS_PINGS_CLEAN, stack_settings.topic_prefix)
    driver = "neg-00000"
    producer = DeliveringProducer(stack_settings)
    producer.deliver([(clean, driver.encode(), _clean(f"p{i}", driver, -23.5)) for i in range(3)])
    expected = {driver: {"clean": 3}}

    early_done = threading.Event()

    def late_conflict() -> None:
        early_done.wait(30)
        time.sleep(1.0)  # while the settling verifier below has already seen the three it expects
        producer.deliver([(clean, driver.encode(), _clean("p1", driver, -23.6))])

    late = threading.Thread(target=late_conflict)
    late.start()
    try:
        # Stopping at the expected count, as the verifier used to, cannot see what comes after.
        early = collect_verdicts(stack_settings, "neg-", 3, timeout_s=30, settle_s=0)
        early_done.set()
        verdicts = collect_verdicts(stack_settings, "neg-", 3, timeout_s=30, settle_s=3.0)
    finally:
        early_done.set()
        late.join()
        producer.close()
    assert compare(expected, early) == []
    assert verdicts.total() == 3
    assert compare(expected, verdicts) == ["('clean', 'p1') emitted twice with different content"]
