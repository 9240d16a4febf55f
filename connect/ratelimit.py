"""A requests-per-second limiter shared by every request of a run."""

from __future__ import annotations

import asyncio
import time


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart (no bursts above the rate)."""

    def __init__(self, rate_per_s: float | None) -> None:
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        if not self.interval:
            return
        async with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            await asyncio.sleep(start - now)

    def pause_until(self, seconds_from_now: float) -> None:
        """After a 429: no request starts before Retry-After has passed."""
        self._next = max(self._next, time.monotonic() + seconds_from_now)
