"""The rate limiter of a partitioned run: Connect's limiter, slots from the shared schedule.

Wires the two edges: `connect.ratelimit.RateLimiter` spaces one process's requests;
`warehouse.ratelimit.SharedSchedule` is the one schedule all workers book from.
"""

from __future__ import annotations

import collections
import time

from connect_sync.connect.ratelimit import RateLimiter
from connect_sync.warehouse.ratelimit import SharedSchedule
from sqlalchemy.engine import Engine


class SharedRateLimiter(RateLimiter):
    """A RateLimiter whose slots come from a schedule shared through PostgreSQL: each
    booking leases a few consecutive slots (about `lease_s` seconds' worth)."""

    def __init__(
        self, rate_per_s: float, engine: Engine, schema: str, name: str, lease_s: float = 0.05
    ) -> None:
        super().__init__(rate_per_s)
        self.schedule = SharedSchedule(engine, schema, name)
        self.lease = max(1, int(rate_per_s * lease_s))
        self._slots: collections.deque[float] = collections.deque()
        self.bookings = 0

    def _book(self) -> None:
        """Lease the next `lease` slots of the shared schedule (one round trip)."""
        start = self.schedule.book(self.lease * self.interval)
        self._slots.extend(start + i * self.interval for i in range(self.lease))
        self.bookings += 1

    def reserve(self) -> float:
        with self._lock:
            now = time.monotonic()
            while self._slots and self._slots[0] < now - self.interval:
                self._slots.popleft()  # stale: starting it now could bunch with others
            if not self._slots:
                self._book()
            start = max(now, self._slots.popleft(), self._paused_until)
            return start - now

    def pause_until(self, seconds_from_now: float) -> None:
        super().pause_until(seconds_from_now)
        self.schedule.pause(seconds_from_now)
