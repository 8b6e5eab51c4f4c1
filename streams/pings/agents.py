"""The ping-cleaning agent: decode each raw ping, apply the pure rules, send it clean or dead-lettered."""

from __future__ import annotations

import time
from typing import Any

import faust

from schemas.codecs import codec
from streams.app import app, gps_pings_clean_topic, gps_pings_raw_topic, gps_pings_rejected_topic
from streams.exceptions import SchemaError
from streams.pings import rules

_gps_ping = codec("GpsPing")


def rejected_record(
    rejection: rules.Rejection, ping: dict[str, Any] | None, raw: bytes | None, message: Any, now_ms: int
) -> dict[str, Any]:
    """Build the RejectedPing for the dead-letter topic, keeping the original ping or bytes."""
    return {
        "reason": str(rejection.reason),
        "detail": rejection.detail,
        "driver_id": ping["driver_id"] if ping else None,
        "ping_id": ping["ping_id"] if ping else None,
        "ping": ping,
        "raw_payload": None if ping else raw,
        "source_topic": message.topic,
        "source_partition": message.partition,
        "source_offset": message.offset,
        "rejected_ts": now_ms,
    }


@app.agent(gps_pings_raw_topic, concurrency=1)
async def clean_pings(stream: faust.StreamT[bytes]) -> None:
    """Validate and H3-snap every raw ping; route rejects with their reason to the dead-letter topic."""
    async for event in stream.events():
        now_ms = int(time.time() * 1000)
        raw: bytes = event.value
        try:
            ping = _gps_ping.decode(raw)
        except SchemaError as exc:
            rejection = rules.Rejection(rules.Reason.MALFORMED, str(exc))
            await gps_pings_rejected_topic.send(
                key=event.key, value=rejected_record(rejection, None, raw, event.message, now_ms)
            )
            continue
        result = rules.clean(ping, now_ms)
        if isinstance(result, rules.Rejection):
            await gps_pings_rejected_topic.send(
                key=event.key, value=rejected_record(result, ping, raw, event.message, now_ms)
            )
        else:
            await gps_pings_clean_topic.send(key=event.key, value=result)
