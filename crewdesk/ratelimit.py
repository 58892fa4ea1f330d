"""One token bucket for every rate limit: backlog enqueueing (waits for tokens) and refused Jira webhook deliveries
(never waits: over the limit is answered at once)."""

from __future__ import annotations

import time
from collections.abc import Callable


class TokenBucket:
    """At most `rate` tokens a second on average, bursts up to `capacity` (default: one second's worth); rate 0 means
    no limit."""

    def __init__(
        self, rate: float, *, capacity: float | None = None, clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep
    ) -> None:
        self.rate, self.clock, self.sleep = rate, clock, sleep
        self.capacity = capacity if capacity is not None else max(1.0, rate)
        self.tokens, self.last = self.capacity, clock()

    def _refill(self) -> None:
        now = self.clock()
        self.tokens = min(self.capacity, self.tokens + (now - self.last) * self.rate)
        self.last = now

    def take(self, n: int) -> None:
        """Take n tokens, sleeping until there are enough."""
        if self.rate <= 0:
            return
        need = min(n, self.capacity)
        while True:
            self._refill()
            if self.tokens >= need - 1e-9:  # float slack: a wait of 1e-12 s can leave the clock unchanged
                self.tokens -= n
                return
            self.sleep((need - self.tokens) / self.rate)

    def try_take(self) -> bool:
        """Take one token if there is one now; never waits."""
        if self.rate <= 0:
            return True
        self._refill()
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True

    def wait(self) -> float:
        """Seconds until one token is there (as of the last take)."""
        return max(0.0, (1.0 - self.tokens) / self.rate) if self.rate > 0 else 0.0
