"""Forward-only message status: queued < sent < delivered < read; failed is terminal unless delivery shows.

Webhooks arrive late, twice and out of order: a late ``delivered`` must never undo ``read``, and a
``sent`` after ``failed`` must not revive a message. Only evidence that the phone got it (``delivered``
or ``read``) overrides ``failed``.
"""

from __future__ import annotations

from collections.abc import Iterable

QUEUED, SENT, DELIVERED, READ, FAILED, UNKNOWN = "queued", "sent", "delivered", "read", "failed", "unknown"
_RANK = {UNKNOWN: 0, QUEUED: 1, SENT: 2, DELIVERED: 3, READ: 4}
STATUSES = frozenset({*_RANK, FAILED})


def advance(current: str | None, new: str) -> str:
    """Return the status after ``new`` arrives on a message whose status is ``current``."""
    if new not in STATUSES:
        raise ValueError(f"unknown message status {new!r}")
    if current is None:
        return new
    if current == FAILED:
        return new if new in (DELIVERED, READ) else FAILED
    if new == FAILED:
        return current if _RANK[current] >= _RANK[DELIVERED] else FAILED
    return new if _RANK[new] > _RANK[current] else current


def fold(statuses: Iterable[str], current: str | None = None) -> str | None:
    """Return the status reached after every one of ``statuses``, in arrival order."""
    for status in statuses:
        current = advance(current, status)
    return current
