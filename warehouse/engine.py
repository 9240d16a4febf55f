"""Engines for warehouse and state URLs, with one engine per URL in a process."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

import pyarrow as pa
import sqlalchemy as sa
from connect_sync.warehouse.errors import WarehouseError
from sqlalchemy.engine import Engine, make_url


def is_duckdb(engine: Engine) -> bool:
    return engine.dialect.name == "duckdb"


#: How each backend opens a connection that cannot write, as (connect_args, URL query) to
#: add: a DuckDB file opened `read_only` shares its lock with other readers (partitions, BI
#: tools, dbt); PostgreSQL runs every transaction read-only (`options` also reaches the
#: ADBC reader, which connects from the URL). Backends not listed open as usual.
READ_ONLY_OPENING: dict[str, tuple[dict[str, object], dict[str, str]]] = {
    "duckdb": ({"read_only": True}, {}),
    "postgresql": ({}, {"options": "-c default_transaction_read_only=on"}),
}


def create_engine(url: str, *, create_dirs: bool = False, read_only: bool = False) -> Engine:
    """An engine for URL; a DuckDB file's folder is created when asked. `read_only`: the
    connections cannot write (READ_ONLY_OPENING), for a warehouse the job only reads;
    WarehouseError when the URL is not one or its driver is missing."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise WarehouseError(f"not a SQLAlchemy URL: {url!r}") from exc
    connect_args: dict[str, object] = {}
    if read_only and parsed.database not in (None, "", ":memory:"):
        connect_args, query = READ_ONLY_OPENING.get(parsed.get_backend_name(), ({}, {}))
        if query:
            given = dict(parsed.query)
            extra = {k: f"{given[k]} {v}" if k in given else v for k, v in query.items()}
            parsed = parsed.update_query_dict(extra)
    if parsed.get_backend_name() == "duckdb" and parsed.database not in (None, "", ":memory:"):
        path = Path(parsed.database)
        if create_dirs:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.exists():
            raise WarehouseError(
                f"DuckDB warehouse file {path} does not exist "
                "(run `connect-sync demo` or set CONNECT_SYNC_WAREHOUSE_URL)"
            )
    try:
        return sa.create_engine(parsed, connect_args=dict(connect_args))
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise WarehouseError(
            f"no driver for {parsed.get_backend_name()!r}: install the matching extra, "
            f"e.g. pip install 'segment-connect-sync[{parsed.get_backend_name()}]'"
        ) from exc


def release_file_database(engine: Engine) -> None:
    """Give back the memory a DuckDB file database holds after a large read.

    DuckDB keeps the blocks a query scanned, and its allocator's freed pages, until the
    database's last connection closes: 500 MB after reading 2M identify rows. Closing the
    pooled connections frees them; the next query reopens the file (about 20 ms). Other
    engines, and in-memory DuckDB (closing would drop it), are left alone.
    """
    if is_duckdb(engine) and engine.url.database not in (None, "", ":memory:"):
        engine.dispose()


def release_unused_memory() -> None:
    """Hand the memory the allocators kept for reuse back to the OS, after each whole-table
    read, between stages and once the largest frames are dropped: Arrow's pool, and the C
    heap, where glibc keeps freed numpy and Python memory (about 250 MB after the users
    stage at 1M users)."""
    pa.default_memory_pool().release_unused()
    if (trim := _malloc_trim()) is not None:
        trim(0)


@cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's `malloc_trim`, or None where the C library has none (musl, macOS,
    Windows)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None).malloc_trim
    except (AttributeError, OSError, TypeError):
        return None


def describe(url: str) -> str:
    """The URL with any password hidden, for messages and logs."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "<invalid url>"
