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


def create_engine(url: str, *, create_dirs: bool = False) -> Engine:
    """An engine for URL; a DuckDB file's folder is created when asked."""
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise WarehouseError(f"not a SQLAlchemy URL: {url!r}") from exc
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
        return sa.create_engine(parsed)
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise WarehouseError(_driver_hint(parsed.drivername)) from exc


#: URL schemes connect-sync reads, with the extra that installs each one's driver.
EXTRAS = {
    "duckdb": None,
    "postgresql": "postgres",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "redshift": "redshift",
}
#: Schemes people write for a supported database, and the one to write instead.
SCHEME_FIXES = {"postgres": "postgresql+psycopg", "postgresql": "postgresql+psycopg"}


def _driver_hint(drivername: str) -> str:
    """Why SQLAlchemy has no dialect or driver for `drivername`, and what to do."""
    backend = drivername.split("+")[0]
    if backend in SCHEME_FIXES and drivername != SCHEME_FIXES[backend]:
        return (
            f"no driver for {drivername}://: write the URL as "
            f"{SCHEME_FIXES[backend]}://user@host/database"
        )
    if backend in EXTRAS:
        extra = EXTRAS[backend]
        return f"no driver for {drivername}://: pip install 'segment-connect-sync[{extra}]'"
    return (
        f"{drivername}:// is not a supported warehouse: use duckdb, postgresql+psycopg, "
        "snowflake, bigquery or redshift"
    )


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
