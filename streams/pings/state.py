"""One driver's cleaning state, bounded in size: recent fixes, what was seen, and a pending jump.

Deduplication is exact and small because phones number their pings. Seen ``seq`` numbers are kept as
blocks ``[seq_lo, seq_hi, ts_lo, ts_hi, bits]``: a run of consecutive seqs is one block without a bitmap,
so a whole day of pings is usually one block of 32 bytes; a fragmented stretch (a shuffled backlog with
lost pings) is one block with a bitmap of one bit per seq, merged with its neighbours whenever that costs
no bytes. The event-time span keeps a phone whose counter restarted (reinstall) from being taken for a
replay. The blocks get ``SEQ_BUDGET_BYTES``: at one ping every 3.6 s or slower that covers every seq of a
24 h horizon, whatever the arrival order. Should a driver ever need more, the oldest blocks are folded into
one compacted span: a seq inside it may have been seen, so it is reported ``UNCERTAIN`` (never new), which
keeps a replay from ever becoming a second clean record.

Pings without ``seq`` (WhatsApp location shares) are remembered by a 64-bit hash of their id, most recent
first. The state packs into at most ``MAX_PACKED_BYTES`` bytes; that is what the table and its changelog hold.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, NamedTuple

HISTORY_FIXES = 16
MAX_ID_HASHES = 64
SEQ_BUDGET_BYTES = 3072
FORMAT_VERSION = 2
# An empty event-time span: a block holding only pings whose clock was wrong (their time says nothing).
NO_TS_LO, NO_TS_HI = 2**63 - 1, -(2**63)

_HEADER = struct.Struct("<BBBBBq")  # version, fixes, seq blocks, id hashes, flags, last offset
_OFFSET = struct.Struct("<q")  # the header's last field
_FIX = struct.Struct("<qdd")
_BLOCK = struct.Struct("<qqqII")  # seq_lo, ts_lo, ts_hi, width, bitmap bytes (0: every seq of it seen)
_SPAN = struct.Struct("<qqqq")  # seq_lo, seq_hi, ts_lo, ts_hi
_HASH = struct.Struct("<Q")
_HAS_CANDIDATE, _HAS_COMPACTED = 1, 2
MAX_PACKED_BYTES = (
    _HEADER.size
    + (HISTORY_FIXES + 1) * _FIX.size
    + SEQ_BUDGET_BYTES
    + _SPAN.size
    + MAX_ID_HASHES * _HASH.size
)
assert MAX_PACKED_BYTES <= 4096
# [seq_lo, seq_hi, ts_lo, ts_hi, bitmap of seen seqs from seq_lo, or None when every one was seen]
Block = list[Any]


class Fix(NamedTuple):
    """An accepted position: event time (epoch ms) and coordinates."""

    ts: int
    lat: float
    lon: float


class Seen(Enum):
    """Whether a ping was seen before."""

    NEW = "new"
    DUPLICATE = "duplicate"
    UNCERTAIN = "uncertain"  # inside the compacted span: it may have been seen


def applied_offset(packed: bytes) -> int:
    """Return the source offset a packed state has applied (in every format version), without unpacking."""
    return int(_OFFSET.unpack_from(packed, _HEADER.size - _OFFSET.size)[0])


def id_hash(ping_id: str) -> int:
    """Return a stable 64-bit hash of a ping id (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(ping_id.encode(), digest_size=8).digest(), "little")


def _cost(block: Block) -> int:
    return _BLOCK.size + (0 if block[4] is None else (block[1] - block[0] + 8) // 8)


def _bits(block: Block) -> int:
    return (1 << (block[1] - block[0] + 1)) - 1 if block[4] is None else block[4]


def _has(block: list, seq: int) -> bool:
    return block[4] is None or (block[4] >> (seq - block[0])) & 1 == 1


def _set(block: list, seq: int) -> None:
    if block[4] is not None:
        bits = block[4] | (1 << (seq - block[0]))
        block[4] = None if bits.bit_count() == block[1] - block[0] + 1 else bits


def _fits(block: list, ts: int) -> bool:
    return block[3] < block[2] or block[2] <= ts <= block[3]


@dataclass(slots=True)
class DriverPingState:
    """What the cleaning rules remember about one driver."""

    fixes: list[Fix] = field(default_factory=list)  # accepted, ascending event time, newest kept
    seq_blocks: list[Block] = field(default_factory=list)  # sorted by seq_lo
    id_hashes: list[int] = field(default_factory=list)  # newest last
    candidate: Fix | None = None  # an unexplained jump waiting for a confirming fix
    last_offset: int = -1  # source offset of the last ping applied: a replay after a crash is not new
    compacted: list[int] | None = None  # [seq_lo, seq_hi, ts_lo, ts_hi] folded out of the blocks

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

    def remember(
        self, ping_id: str, seq: int | None, ts: int, horizon_ts: int, clock_ok: bool = True
    ) -> Seen:
        """Record a ping as seen and say whether it was seen before.

        ``clock_ok=False`` marks a ping whose device time is outside the horizon: its seq is recorded (so
        blocks stay whole) but its time does not shape any block's span.
        """
        if seq is None:
            h = id_hash(ping_id)
            if h in self.id_hashes:
                return Seen.DUPLICATE
            self.id_hashes.append(h)
            if len(self.id_hashes) > MAX_ID_HASHES:
                del self.id_hashes[0]
            return Seen.NEW
        blocks = self.seq_blocks
        if len(blocks) == 1 and clock_ok and self.compacted is None:
            block = blocks[0]
            if seq == block[1] + 1 and block[4] is None and ts >= block[3]:
                # The usual ping: the next of the one run. Nothing to merge, no byte more, not expired.
                block[1], block[2], block[3] = seq, min(block[2], ts), ts  # its span may be empty
                return Seen.NEW
        for block in blocks:
            if block[0] <= seq <= block[1] and block[2] <= ts <= block[3] and _has(block, seq):
                return Seen.DUPLICATE
        span = self.compacted
        if span is not None and span[0] <= seq <= span[1] and span[2] <= ts <= span[3]:
            return Seen.UNCERTAIN
        self._insert(seq, ts, clock_ok)
        self._forget(horizon_ts)
        return Seen.NEW

    def _insert(self, seq: int, ts: int, clock_ok: bool) -> None:
        blocks = self.seq_blocks
        i = self._grow(seq, ts, clock_ok)
        if i < 0:
            block = [seq, seq, ts, ts, None] if clock_ok else [seq, seq, NO_TS_LO, NO_TS_HI, None]
            i = bisect.bisect_left(blocks, seq, key=lambda b: b[0])
            blocks.insert(i, block)
        if i + 1 < len(blocks):
            self._merge(i)
        if i > 0:
            self._merge(i - 1)

    def _grow(self, seq: int, ts: int, clock_ok: bool) -> int:
        """Add a seq to the block it fills or extends; return that block's index, or -1 if none."""
        for i, block in enumerate(self.seq_blocks):
            lo, hi = block[0], block[1]
            if lo <= seq <= hi and (not clock_ok or _fits(block, ts)):
                _set(block, seq)
            elif seq == hi + 1 and (not clock_ok or ts >= block[3]):
                block[1] = seq
                if block[4] is not None:
                    _set(block, seq)
            elif seq == lo - 1 and (not clock_ok or ts <= block[2]):
                block[0] = seq
                if block[4] is not None:
                    block[4] = (block[4] << 1) | 1
            else:
                continue
            if clock_ok:
                block[2], block[3] = min(block[2], ts), max(block[3], ts)
            return i
        return -1

    def _merge(self, i: int) -> None:
        """Merge blocks i and i+1 when they are consecutive in seq and time and that costs no bytes."""
        a, b = self.seq_blocks[i], self.seq_blocks[i + 1]
        if not (a[1] < b[0] and a[3] <= b[2]):  # an empty span fits anywhere
            return
        full = a[4] is None and b[4] is None and a[1] + 1 == b[0]
        merged = [a[0], b[1], min(a[2], b[2]), max(a[3], b[3]), None if full else 0]
        # Priced before the bitmap is built: for seqs far apart (0, then 2**62) it would not fit in memory.
        if _cost(merged) > _cost(a) + _cost(b):
            return
        if not full:
            merged[4] = _bits(a) | (_bits(b) << (b[0] - a[0]))
        self.seq_blocks[i : i + 2] = [merged]

    def _forget(self, horizon_ts: int) -> None:
        # Past the horizon a replay is rejected as too old, so what lies there need not be kept.
        blocks = self.seq_blocks
        if any(NO_TS_HI < b[3] < horizon_ts for b in blocks):
            self.seq_blocks = blocks = [b for b in blocks if not NO_TS_HI < b[3] < horizon_ts]
        if self.compacted is not None and self.compacted[3] < horizon_ts:
            self.compacted = None
        excess = sum(_cost(b) for b in blocks) - SEQ_BUDGET_BYTES
        while excess > 0:
            oldest = min(blocks, key=lambda b: b[3])
            width = oldest[1] - oldest[0] + 1
            cut = width if oldest[4] is None else min(width, 8 * (excess + 1))
            self._compact(oldest[0], oldest[0] + cut - 1, oldest[2], oldest[3])
            if cut == width:
                blocks.remove(oldest)
            else:
                bits = oldest[4] >> cut
                skip = (bits & -bits).bit_length() - 1  # the block starts at a seq it has seen
                oldest[0] += cut + skip
                bits >>= skip
                oldest[4] = None if bits.bit_count() == oldest[1] - oldest[0] + 1 else bits
            excess = sum(_cost(b) for b in blocks) - SEQ_BUDGET_BYTES

    def _compact(self, lo: int, hi: int, ts_lo: int, ts_hi: int) -> None:
        span = self.compacted
        if span is None:
            self.compacted = [lo, hi, ts_lo, ts_hi]
        else:
            self.compacted = [min(span[0], lo), max(span[1], hi), min(span[2], ts_lo), max(span[3], ts_hi)]

    def pack(self) -> bytes:
        """Serialize compactly for the table and its changelog."""
        flags = (_HAS_CANDIDATE if self.candidate else 0) | (_HAS_COMPACTED if self.compacted else 0)
        header = (FORMAT_VERSION, len(self.fixes), len(self.seq_blocks), len(self.id_hashes), flags)
        parts = [_HEADER.pack(*header, self.last_offset)]
        parts.extend(_FIX.pack(*f) for f in self.fixes)
        for lo, hi, ts_lo, ts_hi, bits in self.seq_blocks:
            width = hi - lo + 1
            bitmap = b"" if bits is None else bits.to_bytes((width + 7) // 8, "little")
            parts.append(_BLOCK.pack(lo, ts_lo, ts_hi, width, len(bitmap)))
            parts.append(bitmap)
        parts.extend(_HASH.pack(h) for h in self.id_hashes)
        if self.candidate is not None:
            parts.append(_FIX.pack(*self.candidate))
        if self.compacted is not None:
            parts.append(_SPAN.pack(*self.compacted))
        return b"".join(parts)

    @classmethod
    def unpack(cls, data: bytes | None) -> DriverPingState:
        """Rebuild a state from ``pack()`` output (this format or the previous one); empty gives a new one."""
        if not data:
            return cls()
        version, n_fixes, n_blocks, n_hashes, flags, last_offset = _HEADER.unpack_from(data, 0)
        if version not in (1, FORMAT_VERSION):
            raise ValueError(f"unknown driver state format {version}")
        offset = _HEADER.size
        fixes = [Fix(*f) for f in _FIX.iter_unpack(data[offset : offset + n_fixes * _FIX.size])]
        offset += n_fixes * _FIX.size
        blocks: list[Block] = []
        for _ in range(n_blocks):
            if version == 1:  # seq ranges: every seq of a range was seen
                lo, hi, ts_lo, ts_hi = _SPAN.unpack_from(data, offset)
                offset += _SPAN.size
                blocks.append([lo, hi, ts_lo, ts_hi, None])
                continue
            lo, ts_lo, ts_hi, width, n_bytes = _BLOCK.unpack_from(data, offset)
            offset += _BLOCK.size
            bits = int.from_bytes(data[offset : offset + n_bytes], "little") if n_bytes else None
            offset += n_bytes
            blocks.append([lo, lo + width - 1, ts_lo, ts_hi, bits])
        hashes = [h for (h,) in _HASH.iter_unpack(data[offset : offset + n_hashes * _HASH.size])]
        offset += n_hashes * _HASH.size
        candidate = None
        if flags & _HAS_CANDIDATE:
            candidate = Fix(*_FIX.unpack_from(data, offset))
            offset += _FIX.size
        compacted = list(_SPAN.unpack_from(data, offset)) if flags & _HAS_COMPACTED else None
        return cls(fixes, blocks, hashes, candidate, last_offset, compacted)
