"""One driver's cleaning state, bounded in size: recent fixes, what was seen, and a pending jump.

Deduplication is exact and small because phones number their pings: a run of consecutive ``seq`` numbers
is one range ``[seq_lo, seq_hi]`` with the event-time span it covered, so a whole day of pings is usually
one range. The time span keeps a phone whose counter restarted (reinstall) from being taken for a replay.
Pings without ``seq`` (WhatsApp location shares) are remembered by a 64-bit hash of their id, most recent
first. The state packs into at most ``MAX_PACKED_BYTES`` bytes; that is what the table and its changelog hold.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field
from typing import NamedTuple

HISTORY_FIXES = 16
MAX_SEQ_RANGES = 48
MAX_ID_HASHES = 64
FORMAT_VERSION = 1

_HEADER = struct.Struct("<BBBBBq")  # version, fixes, ranges, id hashes, has candidate, last offset
_FIX = struct.Struct("<qdd")
_RANGE = struct.Struct("<qqqq")
_HASH = struct.Struct("<Q")
MAX_PACKED_BYTES = (
    _HEADER.size
    + (HISTORY_FIXES + 1) * _FIX.size
    + MAX_SEQ_RANGES * _RANGE.size
    + (MAX_ID_HASHES * _HASH.size)
)


class Fix(NamedTuple):
    """An accepted position: event time (epoch ms) and coordinates."""

    ts: int
    lat: float
    lon: float


def id_hash(ping_id: str) -> int:
    """Return a stable 64-bit hash of a ping id (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(ping_id.encode(), digest_size=8).digest(), "little")


@dataclass(slots=True)
class DriverPingState:
    """What the cleaning rules remember about one driver."""

    fixes: list[Fix] = field(default_factory=list)  # accepted, ascending event time, newest kept
    seq_ranges: list[list[int]] = field(default_factory=list)  # [seq_lo, seq_hi, ts_lo, ts_hi], by seq_lo
    id_hashes: list[int] = field(default_factory=list)  # newest last
    candidate: Fix | None = None  # an unexplained jump waiting for a confirming fix
    last_offset: int = -1  # source offset of the last ping applied: a replay after a crash is not new

    def latest(self) -> Fix | None:
        """Return the live position: the accepted fix with the newest event time."""
        return self.fixes[-1] if self.fixes else None

    def neighbours(self, ts: int) -> tuple[Fix | None, Fix | None]:
        """Return the accepted fixes just before (or at) and just after ``ts`` in event time."""
        i = bisect.bisect_right(self.fixes, ts, key=lambda f: f.ts)
        before = self.fixes[i - 1] if i > 0 else None
        after = self.fixes[i] if i < len(self.fixes) else None
        return before, after

    def add_fix(self, fix: Fix) -> None:
        """Insert an accepted fix in event-time order, forgetting the oldest beyond the history size."""
        bisect.insort_right(self.fixes, fix, key=lambda f: f.ts)
        if len(self.fixes) > HISTORY_FIXES:
            del self.fixes[0]

    def remember(self, ping_id: str, seq: int | None, ts: int, horizon_ts: int) -> bool:
        """Record a ping as seen; return False if it was seen before (a duplicate)."""
        if seq is None:
            h = id_hash(ping_id)
            if h in self.id_hashes:
                return False
            self.id_hashes.append(h)
            if len(self.id_hashes) > MAX_ID_HASHES:
                del self.id_hashes[0]
            return True
        ranges = self.seq_ranges
        for lo, hi, ts_lo, ts_hi in ranges:
            if lo <= seq <= hi and ts_lo <= ts <= ts_hi:
                return False
        self._insert_seq(seq, ts)
        # Past the horizon a replay is rejected as too old, so its ranges need not be kept.
        if any(r[3] < horizon_ts for r in ranges):
            self.seq_ranges = [r for r in ranges if r[3] >= horizon_ts]
        if len(self.seq_ranges) > MAX_SEQ_RANGES:
            oldest = min(range(len(self.seq_ranges)), key=lambda i: self.seq_ranges[i][3])
            del self.seq_ranges[oldest]
        return True

    def _insert_seq(self, seq: int, ts: int) -> None:
        ranges = self.seq_ranges
        i = bisect.bisect_left(ranges, seq, key=lambda r: r[0])
        prev = ranges[i - 1] if i > 0 else None
        nxt = ranges[i] if i < len(ranges) else None
        joins_prev = prev is not None and prev[1] == seq - 1 and prev[3] <= ts
        joins_next = nxt is not None and nxt[0] == seq + 1 and ts <= nxt[2]
        if joins_prev and joins_next:
            assert prev is not None and nxt is not None
            prev[1], prev[3] = nxt[1], nxt[3]
            del ranges[i]
        elif joins_prev:
            assert prev is not None
            prev[1], prev[3] = seq, ts
        elif joins_next:
            assert nxt is not None
            nxt[0], nxt[2] = seq, ts
        else:
            ranges.insert(i, [seq, seq, ts, ts])

    def pack(self) -> bytes:
        """Serialize compactly for the table and its changelog."""
        parts = [
            _HEADER.pack(
                FORMAT_VERSION,
                len(self.fixes),
                len(self.seq_ranges),
                len(self.id_hashes),
                self.candidate is not None,
                self.last_offset,
            )
        ]
        parts.extend(_FIX.pack(*f) for f in self.fixes)
        parts.extend(_RANGE.pack(*r) for r in self.seq_ranges)
        parts.extend(_HASH.pack(h) for h in self.id_hashes)
        if self.candidate is not None:
            parts.append(_FIX.pack(*self.candidate))
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes | None) -> DriverPingState:
        """Rebuild a state from ``pack()`` output; ``None`` or empty gives a new driver's state."""
        if not data:
            return cls()
        version, n_fixes, n_ranges, n_hashes, has_candidate, last_offset = _HEADER.unpack_from(data, 0)
        if version != FORMAT_VERSION:
            raise ValueError(f"unknown driver state format {version}")
        offset = _HEADER.size
        fixes = [Fix(*f) for f in _FIX.iter_unpack(data[offset : offset + n_fixes * _FIX.size])]
        offset += n_fixes * _FIX.size
        ranges = [list(r) for r in _RANGE.iter_unpack(data[offset : offset + n_ranges * _RANGE.size])]
        offset += n_ranges * _RANGE.size
        hashes = [h for (h,) in _HASH.iter_unpack(data[offset : offset + n_hashes * _HASH.size])]
        offset += n_hashes * _HASH.size
        candidate = Fix(*_FIX.unpack_from(data, offset)) if has_candidate else None
        return cls(fixes, ranges, hashes, candidate, last_offset)
