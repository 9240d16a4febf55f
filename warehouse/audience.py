"""SQL audiences: a query in sql/audiences/ (or a .sql path) that returns a `user_id` column,
checked by `audience_sql` and run in a transaction that cannot write and is always rolled
back.

Failure contract: `load_audience` raises `AudienceError` (one line, exit code 2) for an
unknown audience, SQL that is not a single read of the source schema, a missing table, a
database error or the statement timeout; it never commits.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from connect_sync.warehouse.audience_sql import AudienceError, prepare_audience
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.segment import SegmentSource
from sqlalchemy.engine import Connection, Engine

from connect_sync import sql

__all__ = ["AUDIENCE_TIMEOUT_S", "AudienceError", "audience_path", "load_audience"]

log = logging.getLogger(__name__)

#: How long an audience query may run before it is cancelled.
AUDIENCE_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class ReadOnlyRun:
    """How a warehouse runs an audience so that it cannot write.

    `setup` runs first in the audience's transaction: it makes the transaction read-only
    and, where the warehouse can, bounds its statements' time (`:timeout_ms`).
    `interrupt` cancels the query from the job at the timeout instead.
    `one_statement` is how the database itself refuses a text of several statements (a
    COMMIT among them would end the read-only transaction): "prepare" has the server
    prepare it (psycopg 3; PostgreSQL prepares one command only), "parse" counts the
    statements with the database's own parser (DuckDB).
    """

    setup: tuple[str, ...] = ()
    interrupt: bool = False
    one_statement: Literal["prepare", "parse"] | None = None


#: Per SQLAlchemy dialect. PostgreSQL: a read-only transaction, a local statement timeout
#: and only built-in functions on the search path. DuckDB: duckdb-engine opens a read-write
#: transaction on begin, replaced by a read-only one; no statement timeout setting, so the
#: job interrupts. Others (Redshift, Snowflake, BigQuery; not testable here): the parser
#: check alone, so give the job's warehouse role read-only grants.
READ_ONLY_RUNS: Mapping[str, ReadOnlyRun] = {
    "postgresql": ReadOnlyRun(
        setup=(
            "SET TRANSACTION READ ONLY",
            "SELECT set_config('statement_timeout', :timeout_ms, true)",
            "SELECT set_config('search_path', 'pg_catalog', true)",
        ),
        one_statement="prepare",
    ),
    "duckdb": ReadOnlyRun(
        setup=("ROLLBACK", "BEGIN TRANSACTION READ ONLY"), interrupt=True, one_statement="parse"
    ),
}


def audience_path(name_or_path: str) -> Path:
    """`NAME` -> sql/audiences/NAME.sql; anything ending in .sql is taken as a path."""
    if name_or_path.endswith(".sql") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise AudienceError(f"audience file {path} not found")
        return path
    candidate = Path(str(files(sql).joinpath("audiences", f"{name_or_path}.sql")))
    if not candidate.is_file():
        available = sorted(p.stem for p in candidate.parent.glob("*.sql"))
        raise AudienceError(
            f"no audience named {name_or_path!r} (available: {', '.join(available) or 'none'};"
            " or give the path of your own .sql file)"
        )
    return candidate


def load_audience(
    engine: Engine,
    name_or_path: str,
    schema: str,
    start: datetime,
    end: datetime,
    *,
    timeout_s: float = AUDIENCE_TIMEOUT_S,
) -> set[str]:
    """The distinct user ids the audience selects, run read-only with bound parameters.

    The query may use `{schema}` (the quoted source schema) and the bound values
    `:start`, `:end` and `:schema`; see README, Audiences, for what else it may use.
    """
    path = audience_path(name_or_path)
    where = path.name
    query = prepare_audience(path.read_text(encoding="utf-8"), where, engine.dialect.name, schema)
    _check_tables_exist(engine, where, schema, query.tables)
    values = {"start": start, "end": end, "schema": schema}
    rows = run_read_only(
        engine,
        sa.text(query.sql),
        {name: values[name] for name in query.parameters},
        where=where,
        timeout_s=timeout_s,
    )
    return {str(r) for r in rows if r is not None}


def run_read_only(
    engine: Engine,
    statement: sa.TextClause,
    params: Mapping[str, Any],
    *,
    where: str,
    timeout_s: float = AUDIENCE_TIMEOUT_S,
) -> list[Any]:
    """The first column of STATEMENT's rows, run in a read-only transaction (where the
    dialect has one, READ_ONLY_RUNS) that is always rolled back, within TIMEOUT_S.

    This is the second guard, below the parser check: it stops a write on its own.
    """
    run = READ_ONLY_RUNS.get(engine.dialect.name, ReadOnlyRun())
    timed_out = threading.Event()
    timeout_ms = str(max(1, int(timeout_s * 1000)))
    log.debug("audience %s: %s", where, statement.text)
    try:
        with engine.connect() as conn:
            try:
                for setup in run.setup:
                    bound = {"timeout_ms": timeout_ms} if ":timeout_ms" in setup else {}
                    conn.execute(sa.text(setup), bound)
                with (
                    _one_statement(conn, statement, run.one_statement, where),
                    _interrupt_after(conn, timeout_s, timed_out, enabled=run.interrupt),
                ):
                    return list(conn.execute(statement, dict(params)).scalars().all())
            finally:
                conn.rollback()
    except sa.exc.StatementError as exc:
        message = _first_line(getattr(exc, "orig", None) or exc)
        if timed_out.is_set() or "statement timeout" in message:
            raise AudienceError(
                f"audience {where} ran longer than its {timeout_s:g} s timeout"
            ) from None
        if "multiple commands" in message:
            raise AudienceError(f"audience {where} must be a single statement") from None
        if "user_id" in message.lower():
            raise AudienceError(f"audience {where} must return a user_id column") from None
        raise AudienceError(f"audience {where} failed: {message}") from None


@contextmanager
def _one_statement(
    conn: Connection, statement: sa.TextClause, how: str | None, where: str
) -> Iterator[None]:
    """Runs the block so that the database refuses STATEMENT if it holds several."""
    raw: Any = conn.connection.dbapi_connection
    if how == "prepare" and hasattr(raw, "prepare_threshold"):
        before = raw.prepare_threshold
        raw.prepare_threshold = 0  # psycopg 3: prepare every statement, this one included
        try:
            yield
        finally:
            raw.prepare_threshold = before
        return
    if how == "parse":
        import duckdb  # the parse check is DuckDB's own

        compiled = str(statement.compile(dialect=conn.dialect))
        try:
            count = len(raw.extract_statements(compiled))
        except duckdb.Error as exc:
            raise AudienceError(f"audience {where} failed: {_first_line(exc)}") from None
        if count != 1:
            raise AudienceError(f"audience {where} must be a single statement")
    yield


@contextmanager
def _interrupt_after(
    conn: Connection, timeout_s: float, fired: threading.Event, *, enabled: bool
) -> Iterator[None]:
    """Interrupts CONN's running query after TIMEOUT_S (DuckDB has no statement timeout)."""
    if not enabled:
        yield
        return
    raw: Any = conn.connection.dbapi_connection

    def interrupt() -> None:
        fired.set()
        raw.interrupt()

    timer = threading.Timer(timeout_s, interrupt)
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _check_tables_exist(engine: Engine, where: str, schema: str, tables: tuple[str, ...]) -> None:
    """Every source table the audience reads exists (on DuckDB a missing one would be read
    as a file of that name), listed as the streams list them (the job's own query where
    the dialect's inspector cannot be asked: Redshift, BigQuery)."""
    try:
        present = SegmentSource(engine, schema).tables()
    except WarehouseError as exc:
        raise AudienceError(f"audience {where} failed: {exc}") from None
    missing = [t for t in tables if t not in present]
    if missing:
        raise AudienceError(
            f"audience {where} reads {', '.join(f'{schema}.{t}' for t in missing)}, "
            "which does not exist"
        )


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
