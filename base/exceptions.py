"""The pipeline's exceptions, one small tree.

WhatsUpError                  base; ``retriable`` alone decides retry versus dead-letter
├── SettingsError             a missing or malformed WHATSUP_* variable (start-up stops)
├── SchemaError               a record that does not fit its Avro schema, or bytes that do not decode
├── StackError                the local stack (broker, Redis) could not be started or reached
├── TransientError            a dependency is briefly unavailable; retriable
└── SendError                 a WhatsApp provider refused or failed a send (connectors/whatsapp/errors.py)
"""

from __future__ import annotations

import sys
from collections.abc import Callable


class WhatsUpError(Exception):
    """Base of every error the pipeline raises on purpose."""

    retriable: bool = False


class SettingsError(WhatsUpError):
    """A WHATSUP_* environment variable is missing or malformed."""


class SchemaError(WhatsUpError):
    """A record does not match its Avro schema, or a payload cannot be decoded."""

    def __init__(self, message: str, *, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason


class StackError(WhatsUpError):
    """A local service (Kafka broker, Redis) could not be started, stopped or reached."""


class TransientError(WhatsUpError):
    """A dependency failed in a way that is worth retrying."""

    retriable = True


def exit_status(prog: str, command: Callable[[], int]) -> int:
    """Run a command-line ``command`` and return its status; a bad setting or an unreachable service
    prints one line to stderr and exits 78 (EX_CONFIG) or 69 (EX_UNAVAILABLE) instead of a traceback."""
    try:
        return int(command())
    except SettingsError as exc:
        print(f"{prog}: bad setting: {exc}", file=sys.stderr)
        return 78  # EX_CONFIG
    except StackError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 69  # EX_UNAVAILABLE
