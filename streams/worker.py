"""The Faust worker class the pipeline runs: Faust's own, without its start-up spinner, and sure to stop.

With a log level of WARNING or above Faust draws a progress spinner on every log record, and to see them all
it lowers the root logger to DEBUG for good: every debug call of aiokafka, aiohttp, mode and Faust then
builds a record and runs a handler, on every request and every fetch, long after start-up (a spinner draws
only on a terminal anyway). Without the spinner the root logger keeps the configured level.
"""

from __future__ import annotations

import logging
import os
import signal
import threading

import faust

from base.settings import get_settings

logger = logging.getLogger(__name__)


class Worker(faust.Worker):
    """``faust.Worker`` that leaves the root logger at the configured level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Drop the spinner instead of lowering the root logger to DEBUG for it."""
        self.spinner = None

    def _schedule_shutdown(self, sig: signal.Signals) -> None:
        """Stop as Faust does, but exit anyway if the stop has not finished in time.

        Faust's stop can wait for ever: on a record no agent will acknowledge (bounded by
        ``streams.shutdown``), or on a group coordinator the client keeps retrying after the broker closed the
        connection mid-rebalance (seen: a heartbeat retried every 100 ms for minutes after SIGTERM).
        """
        if not self._signal_stop_time:
            exit_unless_stopped(get_settings().stop_wait_s + STOP_GRACE_S, sig.name)
        super()._schedule_shutdown(sig)


# After a stop signal, how long the worker may take beyond WHATSUP_STOP_WAIT_S before it exits unfinished.
STOP_GRACE_S = 20.0


def exit_unless_stopped(seconds: float, signal_name: str) -> threading.Timer:
    """Start a daemon timer that ends the process if it is still running ``seconds`` from now."""

    def force() -> None:
        logger.error(
            "the worker did not stop within %.1f s of %s: exiting now; its offsets and state are as safe as"
            " after a kill -9 (the next owner reads the unfinished records again)",
            seconds,
            signal_name,
        )
        logging.shutdown()
        os._exit(1)

    timer = threading.Timer(seconds, force)
    timer.daemon = True
    timer.start()
    return timer
