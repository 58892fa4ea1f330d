"""Login throttling for the console (issue 22): after `limit` failed logins in a minute for one user name, or from one
client address, the next attempt for it is answered 429 with Retry-After, without checking the password, until the
oldest failure of the minute has aged out. Every failure and every refusal is logged (event console_login_failed /
console_login_throttled, with the name and address).

The counts live in the process (one console process per API worker): N workers allow N times the limit, and a restart
forgets them. Behind a proxy the address is the proxy's unless uvicorn is started with --proxy-headers (and
--forwarded-allow-ips for that proxy), so the per-name limit is the one that always holds."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from crewdesk.logging import get_logger

WINDOW = 60.0  # seconds
KEPT = 10_000  # names and addresses with failures held before the expired ones are swept out
log = get_logger(__name__)


class LoginThrottle:
    def __init__(self, limit: int, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.clock = limit, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def keys(name: str, address: str) -> tuple[str, str]:
        return f"name:{name.strip().casefold()}", f"address:{address}"

    def _recent(self, key: str, now: float) -> deque[float]:
        times = self._failures.get(key, deque())
        while times and times[0] <= now - WINDOW:
            times.popleft()
        if not times:
            self._failures.pop(key, None)
        return times

    def retry_after(self, name: str, address: str) -> int:
        """Seconds to wait before this name may try again from this address; 0 when it may try now."""
        if self.limit <= 0:
            return 0
        now = self.clock()
        with self._lock:
            waits = [times[0] + WINDOW - now for key in self.keys(name, address) if len(times := self._recent(key, now)) >= self.limit]
        if waits:
            log.warning("console_login_throttled", name=name[:128], address=address, retry_after=round(max(waits), 1))
        return max(1, math.ceil(max(waits))) if waits else 0

    def failed(self, name: str, address: str) -> None:
        log.warning("console_login_failed", name=name[:128], address=address)
        if self.limit <= 0:
            return
        now = self.clock()
        with self._lock:
            if len(self._failures) > KEPT:  # names tried once and never again: forget those whose minute has passed
                for key in list(self._failures):
                    self._recent(key, now)
            for key in self.keys(name, address):
                self._failures.setdefault(key, self._recent(key, now)).append(now)

    def succeeded(self, name: str) -> None:
        """A right password clears the name's failures (not the address's: one address guessing many names stays slowed)."""
        with self._lock:
            self._failures.pop(self.keys(name, "")[0], None)
