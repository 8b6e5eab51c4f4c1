"""The scaling signal on the real broker: a worker exports its whole group's backlog, 0 once it is gone."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client.parser import text_string_to_metric_families

from base import topics
from base.kafka import consumer_group_backlog
from base.settings import Settings
from schemas.codecs import codec
from tests.integration.sink_stack import produce
from tests.integration.stack import WorkerProcess
from tests.integration.test_clean_pings_on_broker import synthetic_pings


def exported_backlogs(url: str) -> dict[str, float]:
    """Return the worker's ``whatsup_consumer_group_backlog_messages`` by group label."""
    families = text_string_to_metric_families(httpx.get(f"{url}/metrics", timeout=5).text)
    return {
        sample.labels["group"]: sample.value
        for family in families
        if family.name == "whatsup_consumer_group_backlog_messages"
        for sample in family.samples
    }


def wait_until(check: Callable[[], bool], timeout_s: float, what: Callable[[], str]) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, what()
        time.sleep(0.25)


def test_the_worker_exports_its_whole_groups_backlog_and_zero_once_it_is_gone(
    stack_env: dict[str, str], stack_settings: Settings, tmp_path: Path
) -> None:
    group = stack_settings.app_id
    bootstrap = stack_settings.kafka_bootstrap
    admin = AdminClient({"bootstrap.servers": bootstrap})
    # A backlog no worker of the group can work off, so it is there at every sample: 300 records past the
    # group's commit on a topic no agent reads (as a topic left behind would be). The commit is made before
    # the worker starts, while the group has no member; its own assignment never includes this topic.
    left_behind = topics.qualified("left.behind", stack_settings.topic_prefix)
    admin.create_topics([NewTopic(left_behind, num_partitions=1, replication_factor=1)])[left_behind].result()
    produce(stack_settings, left_behind, [(b"k", b"v")] * 400)
    committer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(left_behind, 0, 100)], asynchronous=False)
    committer.close()

    worker = WorkerProcess({**stack_env, "WHATSUP_METRICS_SAMPLE_S": "1"}, tmp_path / "worker.log")
    worker.start()
    try:
        # Real pings through the worker's agents: once their commits are in, only the 300 remain.
        raw = topics.qualified(topics.GPS_PINGS_RAW, stack_settings.topic_prefix)
        gps = codec("GpsPing")
        pings = synthetic_pings("bl", drivers=8, pings_per_driver=10)
        produce(stack_settings, raw, [(p["driver_id"].encode(), gps.encode(p)) for p in pings])
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"{group}-test-reader"})
        try:

            def raw_committed_to_the_end() -> bool:
                listed = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)])
                committed = listed[group].result().topic_partitions or []
                on_raw = [tp for tp in committed if tp.topic == raw and tp.offset >= 0]
                return bool(on_raw) and consumer_group_backlog(admin, reader, group) == 300

            wait_until(raw_committed_to_the_end, 60, worker.log_tail)
        finally:
            reader.close()
        wait_until(lambda: exported_backlogs(worker.url).get("worker") == 300, 30, worker.log_tail)
        # Labelled by role only: the group id carries the deployment's app id.
        assert set(exported_backlogs(worker.url)) == {"worker"}

        # The topic left behind is deleted, and the group's offsets on it with it: the gauge returns to 0.
        admin.delete_topics([left_behind])[left_behind].result()
        wait_until(lambda: exported_backlogs(worker.url).get("worker") == 0, 30, worker.log_tail)
    finally:
        worker.stop()
