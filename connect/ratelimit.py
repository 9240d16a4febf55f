"""A requests-per-second limiter shared by every request of a run."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable


class RateLimiter:
    """Spaces request starts at least 1/rate seconds apart (no bursts above the rate).

    Slots are handed out from a schedule, not from the time a caller wakes up, so sleep
    overshoot does not accumulate: with enough callers waiting, the achieved rate is the
    configured one. A 429's `Retry-After` pauses every caller, limited or not. The limiter
    holds no event-loop object, so one instance serves every stage (and event loop) of a run.
    `clock` and `sleep` are injectable (tests drive them by hand).
    """

    def __init__(
        self,
        rate_per_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.clock = clock
        self.sleep = sleep
        self.rate = rate_per_s or None
        self.interval = 1.0 / rate_per_s if rate_per_s else 0.0
        self._next = 0.0
        self._paused_until = 0.0
        self._lock = threading.Lock()

    def reserve(self) -> float:
        """Book the next start slot; how many seconds to wait for it (0: go now)."""
        with self._lock:
            now = self.clock()
            start = max(now, self._next, self._paused_until)
            if self.interval:
                self._next = start + self.interval
            return start - now

    async def acquire(self) -> None:
        """Wait for a start slot; a pause that began while waiting is honoured too."""
        while True:
            delay = self.reserve()
            if delay > 0:
                await self.sleep(delay)
            if self._paused_until <= self.clock():
                return

    def pause_until(self, seconds_from_now: float) -> None:
        """After a 429: no request starts before Retry-After has passed."""
        with self._lock:
            self._paused_until = max(self._paused_until, self.clock() + seconds_from_now)
