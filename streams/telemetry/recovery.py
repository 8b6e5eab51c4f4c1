"""Get a worker out of a table recovery that has stopped moving: resume its changelog partitions, then leave.

faust-streaming can leave a worker in recovery for good after a rebalance. Seen when a second worker joined
the clean role: the first kept two of its partitions and waited 15 minutes for their changelog records
(Faust's "No event received for active tp ... since recovery start", then "Aiokafka has not sent fetch
request for ... since start"): the client never fetched those changelog partitions, the worker's streams
stayed paused, and the pings of those partitions were never cleaned.

The watch reads Faust's own recovery bookkeeping every few seconds, from the worker's start. A changelog
partition with records still to read and none received for ``WHATSUP_RECOVERY_STALL_S`` is stalled. The first
time, the watch resumes it on the consumer again (what Faust does when recovery starts). If the recovery is
still stalled as long again, the worker exits with code 75: a new process recovers from the changelog and the
committed offsets as after a kill -9, and its supervisor (compose's ``restart: unless-stopped``) starts it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Any

from prometheus_client import Counter

from streams.app import TASKS_FROM_START, app, settings

log = logging.getLogger(__name__)

# The exit code of a worker that left a stalled recovery: 75, try again (start it again).
STALLED_EXIT = os.EX_TEMPFAIL
CHECK_S = 5.0

# The exit is in the log and the exit status: the process is gone before a scrape could read a counter.
RECOVERY_STALLS = Counter(
    "whatsup_worker_recovery_stalls_total",
    "Table recoveries that stopped receiving changelog records and had their partitions resumed on the "
    "consumer again",
)


def stalled_partitions(recovery: Any, now: float, limit_s: float) -> list[Any]:
    """Return the active changelog partitions of a running recovery that have records left to read and
    have received none for ``limit_s`` (counted from the recovery's start if none ever came)."""
    started = getattr(recovery, "_recovery_started_at", None)
    if not getattr(recovery, "in_recovery", False) or started is None:
        return []
    received = getattr(recovery, "_active_events_received_at", {})
    return sorted(
        tp
        for tp, left in recovery.active_remaining().items()
        if left > 0 and now - received.get(tp, started) > limit_s
    )


class RecoveryWatch:
    """Decide, check after check, what a recovery's stall calls for: nothing, a resume, or an exit."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        # The recovery (by its start time) whose partitions were resumed, and when.
        self.resumed: tuple[float, float] | None = None

    def check(self, recovery: Any, consumer: Any, now: float) -> str | None:
        """Resume the stalled partitions once per recovery; return "resumed", "exit" or None."""
        stalled = stalled_partitions(recovery, now, self.limit_s)
        if not stalled:
            return None
        started = recovery._recovery_started_at
        if self.resumed is None or self.resumed[0] != started:
            consumer.resume_partitions(set(stalled))
            self.resumed = (started, now)
            log.warning(
                "table recovery stalled (reason recovery_stalled): no changelog record for %.0f s on %s with "
                "%d to read; resuming them on the consumer",
                self.limit_s,
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled),
                sum(recovery.active_remaining()[tp] for tp in stalled),
            )
            return "resumed"
        if now - self.resumed[1] > self.limit_s:
            log.error(
                "table recovery still stalled (reason recovery_stalled) %.0f s after its partitions were "
                "resumed (%s): exiting so the worker starts again and recovers from the changelog",
                now - self.resumed[1],
                ", ".join(f"{tp.topic}[{tp.partition}]" for tp in stalled),
            )
            return "exit"
        return None


watch = RecoveryWatch(settings.recovery_stall_s)


async def watch_recovery() -> None:
    """Act on a stalled table recovery every few seconds, from the app's start (see the module's docstring):
    a Faust timer would start only after the first recovery has completed."""
    while True:
        await asyncio.sleep(CHECK_S)
        recovery = getattr(app.tables, "recovery", None)  # Faust's TableManager; not on its abstract type
        action = None if recovery is None else watch.check(recovery, app.consumer, time.monotonic())
        if action == "resumed":
            RECOVERY_STALLS.inc()
        elif action == "exit":
            logging.shutdown()
            os._exit(STALLED_EXIT)


TASKS_FROM_START.append(watch_recovery)
