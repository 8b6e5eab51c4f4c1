"""A circuit breaker per provider: closed, open after repeated failures, half-open to probe again."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

CLOSED, HALF_OPEN, OPEN = "closed", "half_open", "open"
STATE_VALUE = {CLOSED: 0, HALF_OPEN: 1, OPEN: 2}


@dataclass
class CircuitBreaker:
    """Open after ``failures`` consecutive retriable failures; after ``reset_s``, let one probe through.

    A success closes it; a failed probe opens it again for another ``reset_s``. Only retriable failures
    count: a permanent error says something about the message, not about the provider.
    """

    failures: int = 5
    reset_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    state: str = CLOSED
    consecutive: int = 0
    opened_at: float = 0.0
    _probing: bool = field(default=False, repr=False)

    def allow(self) -> bool:
        """Tell whether a send may go to this provider now (claiming the probe when half-open)."""
        if self.state == OPEN and self.clock() - self.opened_at >= self.reset_s:
            self.state, self._probing = HALF_OPEN, False
        if self.state == CLOSED:
            return True
        if self.state == HALF_OPEN and not self._probing:
            self._probing = True
            return True
        return False

    def retry_in(self) -> float:
        """Return the seconds until the breaker lets a probe through (0 when it would now)."""
        if self.state != OPEN:
            return 0.0
        return max(0.0, self.reset_s - (self.clock() - self.opened_at))

    def record_success(self) -> None:
        """Close the breaker."""
        self.state, self.consecutive, self._probing = CLOSED, 0, False

    def record_failure(self) -> None:
        """Count a retriable failure; open on the threshold or on a failed probe."""
        self.consecutive += 1
        if self.state == HALF_OPEN or self.consecutive >= self.failures:
            self.state, self.opened_at, self._probing = OPEN, self.clock(), False


def backoff_delay(attempt: int, base_s: float, cap_s: float, rand: Callable[[], float]) -> float:
    """Return the wait before retry ``attempt`` (1-based): full jitter over an exponential ceiling."""
    ceiling = min(cap_s, base_s * 2 ** max(0, attempt - 1))
    # Full jitter (uniform over [0, ceiling]) spreads replicas that failed together; a small floor keeps a
    # retry from hammering at once.
    return max(base_s / 10, rand() * ceiling)
