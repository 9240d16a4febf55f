"""Engines for warehouse and state URLs, with one engine per URL in a process."""

from __future__ import annotations

import ctypes
import sys
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import sqlalchemy as sa
from connect_sync.warehouse.dialects import DIALECTS, capabilities
from connect_sync.warehouse.errors import WarehouseError, first_line, is_driver_error
from sqlalchemy.engine import URL, Engine, make_url


def is_duckdb(engine: Engine) -> bool:
    return engine.dialect.name == "duckdb"


def create_engine(
    url: str,
    *,
    create_dirs: bool = False,
    read_only: bool = False,
    connect_args: Mapping[str, Any] | None = None,
) -> Engine:
    """An engine for URL; a DuckDB file's folder is created when asked. `read_only`: the
    connections cannot write (the dialect's read-only opening, `dialects`), for a
    warehouse the job only reads.

    `connect_args` go to the driver (BigQuery's are turned into its client, see
    CONNECT_ARGS_BUILDERS): `Settings.engine_args` gives the configured ones. Fails with
    WarehouseError, never a driver's traceback: a URL the dialect refuses, no driver, no
    credentials.
    """
    try:
        parsed = make_url(url)
    except sa.exc.ArgumentError as exc:
        raise WarehouseError(f"not a SQLAlchemy URL: {url!r}") from exc
    dialect = capabilities(parsed.get_backend_name())
    connect_args = dialect.driver_defaults | dict(connect_args or {})
    if read_only and parsed.database not in (None, "", ":memory:"):
        connect_args |= dialect.read_only_connect_args
        if query := dialect.read_only_query:
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
        build = CONNECT_ARGS_BUILDERS.get(parsed.get_backend_name())
        if build is not None and connect_args:
            parsed, connect_args = build(parsed, dict(connect_args))
        if connect_args:
            engine = sa.create_engine(parsed, connect_args=dict(connect_args))
        else:
            engine = sa.create_engine(parsed)
        if engine.dialect.driver == "psycopg":
            sa.event.listen(engine, "connect", _load_infinite_timestamps)
        return engine
    except (sa.exc.NoSuchModuleError, ModuleNotFoundError) as exc:
        raise WarehouseError(_driver_hint(parsed.drivername)) from exc
    except Exception as exc:
        # A dialect refusing its URL (snowflake-sqlalchemy 2.x: host, port, key-pair
        # settings), failing on it, or its driver finding no credentials (BigQuery): one
        # line, never a traceback.
        if not isinstance(
            exc, sa.exc.ArgumentError | AttributeError | TypeError | ValueError
        ) and not is_driver_error(exc):
            raise
        raise WarehouseError(
            f"the {parsed.get_backend_name()} dialect refuses the URL "
            f"{parsed.render_as_string(hide_password=True)}: {first_line(exc)}"
        ) from exc


def _load_infinite_timestamps(dbapi_connection: Any, _record: Any) -> None:
    """psycopg refuses PostgreSQL's `infinity` timestamps (no Python datetime holds them:
    DataError, the whole read fails); read them as datetime's own extremes, as DuckDB's
    driver does, which the readers turn into Arrow's (`frames.rows_to_arrow`)."""
    timestamp, timestamptz = _infinite_timestamp_loaders()
    dbapi_connection.adapters.register_loader("timestamp", timestamp)
    dbapi_connection.adapters.register_loader("timestamptz", timestamptz)


@cache
def _infinite_timestamp_loaders() -> tuple[type, type]:
    """psycopg loaders of `timestamp` and `timestamptz` that take +-infinity (built once)."""
    from datetime import UTC, datetime

    from psycopg.types.datetime import TimestampLoader, TimestamptzLoader

    def loader(base: type, tz: Any) -> type:
        edges = {
            b"infinity": datetime.max.replace(tzinfo=tz),
            b"-infinity": datetime.min.replace(tzinfo=tz),
        }

        class InfiniteLoader(base):  # type: ignore[misc, valid-type]
            def load(self, data: Any) -> Any:
                edge = edges.get(bytes(data))
                return edge if edge is not None else super().load(data)

        return InfiniteLoader

    return loader(TimestampLoader, None), loader(TimestamptzLoader, UTC)


def _bigquery_client(url: URL, args: dict[str, Any]) -> tuple[URL, dict[str, Any]]:
    """BigQuery takes its endpoint and credentials as a client object: built here from
    JSON-able arguments `project`, `location`, `api_endpoint`, `credentials_info` (a
    service account's key) or `"credentials": "anonymous"` (emulators), and
    `storage_api_endpoint`, where the Storage Read API answers (host:port, gRPC).

    Results beyond their first page are read through the Storage Read API: at Google's
    endpoint by default, at `storage_api_endpoint` when given. With another `api_endpoint`
    (an emulator) and no `storage_api_endpoint`, only through the REST pages: never from
    Google's Storage endpoint with an emulator's credentials."""
    from google.cloud import bigquery

    credentials = None
    anonymous = args.pop("credentials", None) == "anonymous"
    if anonymous:
        from google.auth.credentials import AnonymousCredentials

        credentials = AnonymousCredentials()
    elif info := args.pop("credentials_info", None):
        from google.oauth2 import service_account

        credentials = service_account.Credentials.from_service_account_info(info)
    options = {"api_endpoint": endpoint} if (endpoint := args.pop("api_endpoint", None)) else None
    storage_endpoint = args.pop("storage_api_endpoint", None)
    client = bigquery.Client(
        project=args.pop("project", None) or url.host,
        credentials=credentials,
        location=args.pop("location", None),
        client_options=options,
    )
    if args:
        raise ValueError(f"unknown BigQuery connect arguments: {', '.join(sorted(args))}")
    connect: dict[str, Any] = {"client": client}
    if storage_endpoint:
        connect["bqstorage_client"] = _bigquery_storage_client(
            storage_endpoint, credentials, insecure=anonymous
        )
    elif options:
        connect["prefer_bqstorage_client"] = False
    return url.update_query_dict({"user_supplied_client": "True"}), connect


def _bigquery_storage_client(endpoint: str, credentials: Any, *, insecure: bool) -> Any:
    """A Storage Read API client for `endpoint`; over a plaintext channel for anonymous
    credentials (an emulator on loopback), else TLS with the credentials."""
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient

    if not insecure:
        options = {"api_endpoint": endpoint}
        return BigQueryReadClient(credentials=credentials, client_options=options)
    import grpc
    from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (
        BigQueryReadGrpcTransport,
    )

    # no message size limits, as the library's own channels: one ReadRows answer can hold
    # more than gRPC's default 4 MB
    unlimited = [("grpc.max_send_message_length", -1), ("grpc.max_receive_message_length", -1)]
    channel = grpc.insecure_channel(endpoint.removeprefix("http://"), options=unlimited)
    return BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))


#: Dialects whose driver takes some connect arguments in another form than JSON gives.
CONNECT_ARGS_BUILDERS: dict[str, Callable[[URL, dict[str, Any]], tuple[URL, dict[str, Any]]]] = {
    "bigquery": _bigquery_client,
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
    if backend in DIALECTS:
        extra = DIALECTS[backend].extra
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
