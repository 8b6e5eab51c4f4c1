"""The worker class keeps the root logger at the configured level (Faust's own lowers it to DEBUG)."""

from __future__ import annotations

import io
import logging

import faust
from faust.utils import terminal

from streams.worker import Worker


def _logger(name: str) -> logging.Logger:
    logger = logging.getLogger(name)
    logger.setLevel(logging.WARNING)
    logger.handlers = [logging.NullHandler()]
    return logger


def test_the_root_logger_keeps_the_configured_level() -> None:
    theirs, ours = object.__new__(faust.Worker), object.__new__(Worker)
    for worker in (theirs, ours):
        worker.spinner = terminal.Spinner(file=io.StringIO())  # what Worker.__init__ sets
    faust_logger, our_logger = _logger("test-faust-worker-root"), _logger("test-our-worker-root")
    theirs.on_setup_root_logger(faust_logger, logging.WARNING)
    ours.on_setup_root_logger(our_logger, logging.WARNING)
    # Faust's worker would build a record for every library debug call from then on; ours does not.
    assert faust_logger.level == logging.DEBUG and len(faust_logger.handlers) == 2
    assert our_logger.level == logging.WARNING and len(our_logger.handlers) == 1
    assert ours.spinner is None
