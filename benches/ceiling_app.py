"""A do-nothing Faust app for ``whatsup bench``: the most a Faust agent can consume on this machine.

It takes batches from the same pre-loaded topic as the clean stage and only acks them, so the clean stage's
rate can be read against Faust's own per-message cost as well as against a bare aiokafka drain.
"""

from __future__ import annotations

import os
import time

import faust

TOPIC = os.environ.get("BENCH_CEILING_TOPIC", "bench-ceiling")
TOTAL = int(os.environ.get("BENCH_CEILING_TOTAL", "0"))

app = faust.App(
    os.environ.get("BENCH_CEILING_APP", "bench-ceiling"),
    broker=f"kafka://{os.environ.get('BENCH_CEILING_BOOTSTRAP', '127.0.0.1:9092')}",
    store="memory://",
    # Faust's default data dir is relative to the working directory, the checkout's root.
    datadir=os.environ.get("BENCH_CEILING_DATADIR", "var/bench/ceiling"),
    web_port=int(os.environ.get("BENCH_CEILING_PORT", "6299")),
    consumer_auto_offset_reset="earliest",
    broker_max_poll_records=5000,
    stream_buffer_maxsize=20_000,
)
source_topic = app.topic(TOPIC, key_type=str, key_serializer="raw", value_type=bytes, value_serializer="raw")
_progress = {"seen": 0, "started": 0.0}


@app.agent(source_topic)
async def ack_only(stream: faust.StreamT[bytes]) -> None:
    """Ack every record and report the rate once ``TOTAL`` records went by."""
    async for events in stream.noack_take(5000, within=0.1):  # type: ignore[attr-defined]
        if not _progress["started"]:
            _progress["started"] = time.perf_counter()
        for event in events:
            await stream.ack(event)
        _progress["seen"] += len(events)
        if _progress["seen"] >= TOTAL:
            rate = _progress["seen"] / (time.perf_counter() - _progress["started"])
            os.write(1, f"CEILING {rate:.1f}\n".encode())  # Faust redirects sys.stdout to its logger
            os._exit(0)
