"""Verified API keys remembered for a short time, per app."""

from __future__ import annotations

import threading
import time

from crewdesk.auth.service import Principal

CACHE_SECONDS = 30.0


class KeyCache:
    """Verified keys by their SHA-256, for CACHE_SECONDS: Argon2 is slow on purpose, a request should not pay it each time."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[float, Principal]] = {}
        self._lock = threading.Lock()

    def get(self, digest: str) -> Principal | None:
        with self._lock:
            hit = self._seen.get(digest)
            if hit is None or hit[0] < time.monotonic():
                self._seen.pop(digest, None)
                return None
            return hit[1]

    def put(self, digest: str, principal: Principal) -> None:
        with self._lock:
            if len(self._seen) > 10_000:
                self._seen.clear()
            self._seen[digest] = (time.monotonic() + CACHE_SECONDS, principal)
