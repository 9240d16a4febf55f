"""One run per state store and source schema at a time.

PostgreSQL: a session advisory lock held on a dedicated connection for the whole run
(released when the run ends or its process dies, with the connection). DuckDB: an
exclusive `flock` on a file next to the database file (released by the kernel when the
process dies). An in-memory DuckDB state store is private to its process: no lock.

Failure contract: `RunLock.acquire` raises `RunInProgress` (a `WarehouseError`, so the
CLI exits 2 with its one line) when another live run holds the lock; it never waits.
"""

from __future__ import annotations

import fcntl
import hashlib
import logging
import os
from pathlib import Path
from typing import IO

import connect_sync.sql as sql_files
import sqlalchemy as sa
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.errors import WarehouseError
from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)


class RunInProgress(WarehouseError):
    """Another run of the same state store and source schema is running."""


def lock_key(state_schema: str, source_schema: str) -> int:
    """A signed 64-bit advisory lock key for one (state schema, source schema)."""
    digest = hashlib.blake2b(f"connect-sync|{state_schema}|{source_schema}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "big", signed=True)


def lock_path(database: str, state_schema: str, source_schema: str) -> Path:
    """The lock file of a DuckDB state file, one per (state schema, source schema)."""
    db = Path(database)
    return db.with_name(f"{db.name}.{state_schema}.{source_schema}.run.lock")


class RunLock:
    """The run lock of one state store and source schema (see the module docstring)."""

    def __init__(self, engine: Engine, state_schema: str, source_schema: str) -> None:
        self.engine = engine
        self.key = lock_key(state_schema, source_schema)
        self.state_schema, self.source_schema = state_schema, source_schema
        self._conn: sa.Connection | None = None
        self._file: IO[bytes] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None or self._file is not None

    def try_acquire(self) -> bool:
        """Take the lock if free; False when another run holds it."""
        dialect, database = self.engine.dialect.name, self.engine.url.database
        if capabilities(dialect).advisory_locks:
            conn = self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")
            try:
                taken = conn.execute(
                    sql_files.render("state_run_lock", conn.dialect), {"key": self.key}
                ).scalar()
            except BaseException:
                conn.close()
                raise
            if not taken:
                conn.close()
                return False
            self._conn = conn
            return True
        if dialect == "duckdb" and database not in (None, "", ":memory:"):
            path = lock_path(database, self.state_schema, self.source_schema)
            path.parent.mkdir(parents=True, exist_ok=True)
            handle = path.open("a+b")
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.close()
                return False
            handle.seek(0)
            handle.truncate()
            handle.write(f"{os.getpid()}\n".encode())
            handle.flush()
            self._file = handle
            return True
        return True  # an in-memory or other store: private to this process

    def note(self, text: str) -> None:
        """Write who holds a DuckDB lock file (run id, start, host, pid) for the next run's
        message; nothing elsewhere (PostgreSQL runs read the runs table)."""
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()
            self._file.write(text.encode())
            self._file.flush()

    def holder(self) -> str | None:
        """What the holder of a DuckDB lock file wrote there (None elsewhere)."""
        database = self.engine.url.database
        if self.engine.dialect.name != "duckdb" or database in (None, "", ":memory:"):
            return None
        try:
            text = lock_path(database, self.state_schema, self.source_schema).read_text()
        except OSError:
            return None
        return text.strip() or None

    def release(self) -> None:
        """Give the lock back (idempotent; never raises)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.execute(sql_files.render("state_run_unlock", conn.dialect), {"key": self.key})
            except Exception as exc:  # closing the session releases it anyway
                log.warning("could not release the run lock: %s", exc)
            finally:
                conn.invalidate()  # the session ends: no lock can outlive it in the pool
                conn.close()
        handle, self._file = self._file, None
        if handle is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
            finally:
                handle.close()
