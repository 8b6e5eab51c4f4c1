"""A real worker whose table recovery cannot move resumes its changelog partition, then exits with status 75
for its supervisor to start it again, instead of waiting for ever with its streams paused.

The stall is made for certain: a changelog partition's records are written in a Kafka transaction, so its
end offset counts the transaction's commit marker, a record no consumer is ever handed, and Faust (without
exactly-once) waits for it (faust-streaming issue 47).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from base.kafka import client_config, make_producer
from base.settings import Settings
from tests.integration.stack import WorkerProcess, wait_until

STALL_S = 2.0


def watermarks(settings: Settings, topic: str) -> tuple[int, int]:
    consumer = Consumer(client_config(settings, **{"group.id": "watermarks"}))
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)
        return int(low), int(high)
    finally:
        consumer.close()


def test_a_worker_whose_recovery_stalls_resumes_then_exits_for_a_restart(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    changelog = f"{stack_settings.app_id}-driver_state-changelog"
    admin = AdminClient(client_config(stack_settings))
    first = WorkerProcess(stack_env, tmp_path / "worker-first.log")
    first.start()
    wait_until(lambda: changelog in admin.list_topics(timeout=10).topics, "the tables' changelog topics")
    first.stop()
    # Written in a transaction, as a producer with exactly-once would: the commit marker after the records
    # takes an offset of its own that no consumer is ever handed.
    producer = make_producer(stack_settings, **{"transactional.id": f"{changelog}-writer"})
    producer.init_transactions(30)
    producer.begin_transaction()
    failed: list[str] = []
    for n in range(10):
        producer.produce(
            changelog,
            b"packed state",
            f"rider-{n}".encode(),
            partition=0,
            on_delivery=lambda error, _: failed.append(str(error)) if error else None,
        )
    producer.commit_transaction(30)
    assert failed == []
    # The broker writes the commit marker after the commit returns: 10 records, the marker at offset 10.
    wait_until(lambda: watermarks(stack_settings, changelog) == (0, 11), "the transaction's commit marker")

    stalled = WorkerProcess({**stack_env, "WHATSUP_RECOVERY_STALL_S": str(STALL_S)}, tmp_path / "worker.log")
    with contextlib.suppress(AssertionError):  # healthy while it recovers, or already gone: either will do
        stalled.start(timeout_s=60)
    try:
        process = stalled.process
        assert process is not None
        started = time.monotonic()
        wait_until(lambda: process.poll() is not None, "the stalled worker to exit", timeout_s=120)
    finally:
        stalled.stop()  # reaps it and closes its log
    log = stalled.log_path.read_text()
    assert process.returncode == 75, log[-3000:]
    warned = log.index("table recovery stalled (reason recovery_stalled)")
    exited = log.index("table recovery still stalled (reason recovery_stalled)")
    assert warned < exited and f"{changelog}[0]" in log[warned:exited]
    assert time.monotonic() - started < 60
