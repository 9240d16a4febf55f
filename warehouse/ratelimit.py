"""One rate limit for a partitioned run, however many workers: a schedule in PostgreSQL.

`connect.ratelimit.RateLimiter` spaces the requests of one process; a partitioned run has
several processes on several machines sending with one Connect key. `SharedSchedule` is
one row of the state store (`rate_limits`, keyed by a hash of the API URL and key) that
`flows.shared_rate.SharedRateLimiter` books its start slots from: each booking leases a
few consecutive slots with one `UPDATE ... RETURNING` under a row lock, timed by the
database clock. Slots are never handed out twice, so the requests of all workers together
never start faster than the configured rate.
"""

from __future__ import annotations

import hashlib
import logging
import time

import sqlalchemy as sa
from connect_sync.warehouse.dialects import capabilities
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


class SharedSchedule:
    """The shared schedule of one Connect environment: one row of `rate_limits`.

    Failure contract: `book` raises SQLAlchemyError when the state store is unreachable
    (the caller cannot send without a slot); `pause` logs and carries on (the local pause
    still holds)."""

    def __init__(self, engine: Engine, schema: str, name: str) -> None:
        if not capabilities(engine.dialect.name).shared_rate_schedule:
            raise ValueError("a shared rate limit needs a PostgreSQL state store")
        self.engine = engine
        self.name = name
        self._reserve = sql.render(
            "rate_limit_reserve", engine.dialect, schema=schema, rate_limits=TABLE
        )
        self._pause = sql.render(
            "rate_limit_pause", engine.dialect, schema=schema, rate_limits=TABLE
        )

    def book(self, span: float) -> float:
        """Book the next `span` seconds of the schedule: the local monotonic time its
        first slot starts (the database's clock, placed between sending and answering)."""
        with self.engine.begin() as conn:
            sent = time.monotonic()
            delay = float(conn.execute(self._reserve, {"name": self.name, "span": span}).scalar())
            answered = time.monotonic()
        return (sent + answered) / 2 + max(0.0, delay)

    def pause(self, seconds: float) -> None:
        """Share a Retry-After pause with every worker."""
        try:
            with self.engine.begin() as conn:
                conn.execute(self._pause, {"name": self.name, "seconds": seconds})
        except sa.exc.SQLAlchemyError as exc:  # the local pause still holds
            log.warning("could not share a Retry-After pause: %s", exc)
