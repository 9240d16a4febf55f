"""One rate limit for a partitioned run, however many workers: a schedule in PostgreSQL.

`connect.ratelimit.RateLimiter` spaces the requests of one process; a partitioned run has
several processes on several machines sending with one Connect key. `SharedRateLimiter`
keeps the same interface, but books its start slots from one row of the state store
(`rate_limits`, keyed by a hash of the API URL and key): each booking leases a few
consecutive slots (about `lease_s` seconds' worth) with one `UPDATE ... RETURNING` under a
row lock, timed by the database clock. Slots are never handed out twice, so the requests
of all workers together never start faster than the configured rate; a slot that went
stale unused is dropped, not spent late (that could bunch requests up).
"""

from __future__ import annotations

import collections
import hashlib
import logging
import time

import sqlalchemy as sa
from connect_sync.connect.ratelimit import RateLimiter
from sqlalchemy.engine import Engine

from connect_sync import sql

log = logging.getLogger(__name__)

TABLE = "rate_limits"


def limit_name(api_url: str, api_key: str) -> str:
    """The shared schedule's key: one per Connect environment (never the key itself)."""
    return hashlib.sha256(f"{api_url.rstrip('/')}|{api_key}".encode()).hexdigest()[:32]


def ensure_table(engine: Engine, schema: str) -> None:
    """Create the shared schedule's table (the coordinating run does, before any worker)."""
    with engine.begin() as conn:
        conn.execute(sa.schema.CreateSchema(schema, if_not_exists=True))
        conn.execute(sql.render("rate_limit_table", conn.dialect, schema=schema, rate_limits=TABLE))


class SharedRateLimiter(RateLimiter):
    """A RateLimiter whose slots come from a schedule shared through PostgreSQL."""

    def __init__(
        self, rate_per_s: float, engine: Engine, schema: str, name: str, lease_s: float = 0.05
    ) -> None:
        super().__init__(rate_per_s)
        if engine.dialect.name != "postgresql":
            raise ValueError("a shared rate limit needs a PostgreSQL state store")
        self.engine = engine
        self.name = name
        self.lease = max(1, int(rate_per_s * lease_s))
        self._slots: collections.deque[float] = collections.deque()
        self._reserve = sql.render(
            "rate_limit_reserve", engine.dialect, schema=schema, rate_limits=TABLE
        )
        self._pause = sql.render(
            "rate_limit_pause", engine.dialect, schema=schema, rate_limits=TABLE
        )
        self.bookings = 0

    def _book(self) -> None:
        """Lease the next `lease` slots of the shared schedule (one round trip)."""
        span = self.lease * self.interval
        with self.engine.begin() as conn:
            sent = time.monotonic()
            delay = float(conn.execute(self._reserve, {"name": self.name, "span": span}).scalar())
            answered = time.monotonic()
        start = (sent + answered) / 2 + max(0.0, delay)  # the database's "now", locally
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
        try:
            with self.engine.begin() as conn:
                conn.execute(self._pause, {"name": self.name, "seconds": seconds_from_now})
        except sa.exc.SQLAlchemyError as exc:  # the local pause still holds
            log.warning("could not share a Retry-After pause: %s", exc)
