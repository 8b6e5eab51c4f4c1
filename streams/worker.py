"""The Faust worker class the pipeline runs: Faust's own, without its start-up spinner.

With a log level of WARNING or above Faust draws a progress spinner on every log record, and to see them all
it lowers the root logger to DEBUG for good: every debug call of aiokafka, aiohttp, mode and Faust then
builds a record and runs a handler, on every request and every fetch, long after start-up (a spinner draws
only on a terminal anyway). Without the spinner the root logger keeps the configured level.
"""

from __future__ import annotations

import logging

import faust


class Worker(faust.Worker):
    """``faust.Worker`` that leaves the root logger at the configured level."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Drop the spinner instead of lowering the root logger to DEBUG for it."""
        self.spinner = None
