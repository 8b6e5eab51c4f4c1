"""Erase a driver's live state on request (topic ``privacy.erasures``, written by ``whatsup erase``).

The topic is keyed by driver id and co-partitioned with the driver's inputs, so the worker holding the
driver's state gets the request. Under the state lock (the agent and the timer are not mid-change), it writes
a tombstone to the driver_state changelog and waits for the broker, then drops the state from the store,
the cached state objects and the delivery index: a restarted or new worker recovers no state for the driver.
"""

from __future__ import annotations

import logging

import faust

from base import topics
from base.exceptions import SchemaError
from schemas.codecs import codec
from streams.app import app, settings
from streams.deliveries import metrics
from streams.deliveries.agents import (
    deliver_records,
    driver_state,
    index_deliveries,
    state_lock,
    unpacked_states,
)

log = logging.getLogger(__name__)

erasures_topic = app.topic(
    topics.qualified(topics.PRIVACY_ERASURES, settings.topic_prefix),
    key_type=bytes,
    key_serializer="raw",
    value_type=bytes,
    value_serializer="raw",
    partitions=settings.partitions,
)
_erasure = codec("Erasure")


async def forget_driver(driver_id: str) -> bool:
    """Tombstone a driver's state on the changelog and drop it here; True if there was one."""
    key = driver_id.encode()
    async with state_lock:
        had_state = driver_state.data.get(key) is not None
        changelog = driver_state.changelog_topic.get_topic_name()
        await deliver_records([(changelog, key, None)])  # type: ignore[list-item]
        driver_state.data.pop(key, None)
        unpacked_states.clear()
        index_deliveries(key, None)
    return had_state


@app.agent(erasures_topic, concurrency=1)
async def erase_driver_states(stream: faust.StreamT[bytes]) -> None:
    """Drop the live state of each driver an erasure request names."""
    async for value in stream:
        try:
            request = _erasure.decode(value)
        except SchemaError as exc:
            log.error("privacy.erasures: undecodable request skipped (reason malformed): %s", exc)
            metrics.ERASURES.labels("malformed").inc()
            continue
        driver_id = request["driver_id"]
        erased = bool(driver_id) and await forget_driver(driver_id)
        metrics.ERASURES.labels("erased" if erased else "no_state").inc()
        log.info("erasure %s: driver state %s", request["erasure_id"], "erased" if erased else "none here")
