"""Per-driver token buckets for the ingest API, bounded in memory. Pure: the caller passes the clock."""

from __future__ import annotations

from collections import OrderedDict


class DriverRateLimiter:
    """Allow each driver ``burst`` requests at once and ``rate_per_s`` sustained.

    At most ``max_drivers`` buckets are kept; the least recently seen driver is forgotten first.
    """

    def __init__(self, rate_per_s: float, burst: int, max_drivers: int = 200_000) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_drivers = max_drivers
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # driver -> (tokens, at)

    def acquire(self, driver_id: str, now_s: float) -> float:
        """Take one request's token; return 0 if allowed, else the seconds to wait before retrying."""
        tokens, at = self._buckets.pop(driver_id, (float(self.burst), now_s))
        tokens = min(float(self.burst), tokens + (now_s - at) * self.rate_per_s)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate_per_s
        self._buckets[driver_id] = (tokens, now_s)
        if len(self._buckets) > self.max_drivers:
            # The least recently seen driver has long since refilled its bucket; forgetting it is lossless.
            self._buckets.popitem(last=False)
        return wait
