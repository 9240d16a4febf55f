"""Query results as Arrow record batches and DataFrames: the same types from every driver.

Three ways to read, the fastest one the backend has:

- DuckDB: the raw DuckDB connection behind SQLAlchemy runs the statement as a relation and
  exports Arrow record batches natively (no Python object per value, no DB-API copy).
- PostgreSQL: ADBC (`adbc-driver-postgresql`, in the `postgres` extra) streams the result
  through binary COPY into Arrow in C++. COPY takes no bind parameters, so the values are
  bound client-side by psycopg's own literal adaptation (never pasted strings).
- Anything else (Redshift, Snowflake, BigQuery, or PostgreSQL without ADBC): SQLAlchemy
  with a server-side cursor (`stream_results`), `fetchmany(chunk_size)` into Arrow.

Every batch is normalized to one schema per Segment type (`timestamp[us, UTC]`, `string`,
`int64`, `double`, `bool`, and `decimal128(p, s)` for declared NUMBER/NUMERIC columns,
exact), so the DataFrames are identical whichever path read them.
Memory is bounded by `chunk_size` rows per batch: nothing here holds a whole result
unless `read_frame`/`read_arrow` is asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import TextClause
from sqlalchemy.engine import Connection, Dialect

log = logging.getLogger(__name__)

UTC_MICROS = pa.timestamp("us", tz="UTC")


# -- one schema out of every driver --------------------------------------------------------


def normalize_type(dtype: pa.DataType) -> pa.DataType:
    """The Segment-canonical Arrow type for a driver's type."""
    if pa.types.is_timestamp(dtype):
        return UTC_MICROS  # timestamps without a zone (Redshift, Snowflake NTZ) are UTC
    if pa.types.is_dictionary(dtype):
        return normalize_type(dtype.value_type)
    if (
        pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_string_view(dtype)
    ):
        return pa.string()
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.float64()
    if pa.types.is_decimal(dtype) and dtype.precision <= 38:
        return pa.decimal128(dtype.precision, dtype.scale)  # exact, as declared
    if pa.types.is_decimal(dtype):
        return pa.float64()  # wider than any Segment NUMBER: approximate
    return dtype


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, normalize_type(f.type)) for f in schema])


def _normalize_column(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    dtype = array.type
    if dtype == target:
        return array
    if pa.types.is_dictionary(dtype):
        array = (
            array.dictionary_decode()
            if isinstance(array, pa.Array)
            else pc.cast(array, dtype.value_type)
        )
        return _normalize_column(array, target)
    if pa.types.is_timestamp(dtype) and dtype.tz is None:
        array = pc.assume_timezone(array.cast(pa.timestamp(dtype.unit)), "UTC")
    return array.cast(target, safe=not pa.types.is_decimal(dtype))


def normalize_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """The batch in the canonical schema, without driver metadata."""
    schema = normalize_schema(batch.schema)
    if batch.schema.equals(schema, check_metadata=True):
        return batch
    columns = [
        _normalize_column(column, field.type)
        for column, field in zip(batch.columns, schema, strict=True)
    ]
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def arrow_to_frame(table: pa.Table | pa.RecordBatch) -> pd.DataFrame:
    """Arrow dtypes keep integers integers and booleans booleans through nulls."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


#: PostgreSQL/Redshift type OIDs (psycopg, psycopg2 and ADBC report them) for Segment types.
_PG_OIDS = {
    16: pa.bool_(),
    20: pa.int64(),
    21: pa.int64(),
    23: pa.int64(),
    700: pa.float64(),
    701: pa.float64(),
    1700: pa.float64(),
    25: pa.string(),
    1042: pa.string(),
    1043: pa.string(),
    1114: UTC_MICROS,
    1184: UTC_MICROS,
}


#: Snowflake's result type codes (the connector's FIELD_TYPES, by index); 0 is FIXED
#: (NUMBER), typed by its scale in `described_type`.
_SNOWFLAKE_CODES = {
    1: pa.float64(),  # REAL
    2: pa.string(),  # TEXT
    4: UTC_MICROS,  # TIMESTAMP
    6: UTC_MICROS,  # TIMESTAMP_LTZ
    7: UTC_MICROS,  # TIMESTAMP_TZ
    8: UTC_MICROS,  # TIMESTAMP_NTZ
    13: pa.bool_(),  # BOOLEAN
}
#: How each dialect's driver codes a column's type in the DB-API `description`: integer
#: codes mean different things to different drivers (16 is a boolean to PostgreSQL).
DESCRIBED_CODES: dict[str, dict[int, pa.DataType]] = {
    "postgresql": _PG_OIDS,
    "redshift": _PG_OIDS,
    "snowflake": _SNOWFLAKE_CODES,
}


#: Integer type codes that are a NUMERIC/NUMBER of declared precision and scale, per dialect.
_DECIMAL_CODES = {"postgresql": 1700, "redshift": 1700, "snowflake": 0}


def described_type(
    type_code: Any,
    dialect: str = "postgresql",
    scale: int | None = None,
    precision: int | None = None,
) -> pa.DataType | None:
    """The Arrow type of a DB-API `description` type code, when it names one: the table's
    declared type, which fixes a column's type whatever values a chunk holds. A decimal
    of declared precision stays exact (decimal128); one without (PostgreSQL's bare
    NUMERIC) is a float."""
    if isinstance(type_code, int) and not isinstance(type_code, bool):
        if _DECIMAL_CODES.get(dialect) == type_code:
            if dialect == "snowflake" and not scale:
                return pa.int64()  # NUMBER(p, 0): Segment's integers
            if precision and scale is not None and 0 < precision <= 38:
                return pa.decimal128(precision, scale)
            return pa.float64()
        return DESCRIBED_CODES.get(dialect, {}).get(type_code)
    name = str(type_code).upper()
    for words, dtype in (
        (("TIMESTAMP", "DATETIME"), UTC_MICROS),
        (("BOOL",), pa.bool_()),
        (("INT",), pa.int64()),
        (("DOUBLE", "FLOAT", "REAL", "DECIMAL", "NUMERIC", "NUMBER"), pa.float64()),
        (("CHAR", "TEXT", "STRING"), pa.string()),
    ):
        if any(word in name for word in words):
            return dtype
    return None


def _entry(description: Any, index: int) -> int | None:
    """Item `index` of a DB-API description entry (name, type_code, display_size,
    internal_size, precision, scale, null_ok), None when the driver leaves it out."""
    try:
        value = description[index]
    except (IndexError, TypeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def rows_to_arrow(
    keys: list[str], rows: list[tuple[Any, ...]], types: list[pa.DataType | None] | None = None
) -> pa.RecordBatch:
    """DB-API rows as one normalized batch: types inferred from the values; a column with
    no value in the batch takes its described type (else string)."""
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
    types = types or [None] * len(keys)
    arrays = []
    for col, dtype in zip(columns, types, strict=True):
        array = pa.array(list(col))
        if pa.types.is_null(array.type):
            array = pa.nulls(len(array), dtype or pa.string())
        elif dtype is not None and normalize_type(array.type) != dtype:
            array = _normalize_column(array, dtype)  # the declared type, not the values'
        arrays.append(array)
    return normalize_batch(pa.RecordBatch.from_arrays(arrays, names=keys))


def _rechunk(reader: Iterator[pa.RecordBatch], chunk_size: int) -> Iterator[pa.RecordBatch]:
    """Batches of at most `chunk_size` rows (slices are zero-copy)."""
    for batch in reader:
        for start in range(0, batch.num_rows, chunk_size):
            yield batch.slice(start, chunk_size)


# -- compiling a text clause for a driver ---------------------------------------------------


@cache
def _positional_dialect(dialect_cls: type[Dialect]) -> Dialect:
    return dialect_cls(paramstyle="qmark")


def _compile(
    clause: TextClause, params: Mapping[str, Any], dialect: Dialect
) -> tuple[str, dict[str, Any], list[str] | None]:
    """The statement with expanding lists rendered, its parameters, and their order."""
    bound = clause.bindparams(**params) if params else clause
    compiled = bound.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    positions = list(compiled.positiontup) if compiled.positiontup is not None else None
    return compiled.string, compiled.construct_params(), positions


# -- the readers ----------------------------------------------------------------------------


#: Rows streamed from DuckDB between two evictions of the blocks it cached (see below).
EVICT_EVERY_ROWS = 500_000


def _duckdb_batches(
    conn: Connection,
    clause: TextClause,
    params: Mapping[str, Any],
    chunk_size: int,
    streaming: bool = False,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """DuckDB's own relation API: native Arrow export, `chunk_size` rows per batch."""
    dialect = _positional_dialect(type(conn.dialect))
    statement, values, order = _compile(clause, params, dialect)
    raw = conn.connection.driver_connection  # duckdb_engine's wrapper of the connection
    raw.execute("SET enable_progress_bar = false")  # it would print into the CLI's output
    relation = raw.sql(statement, params=[values[k] for k in order or []])
    reader = relation.to_arrow_reader(chunk_size)
    if not streaming:
        return reader.schema, iter(reader)
    return reader.schema, _evicting(reader, raw)


def _evicting(reader: pa.RecordBatchReader, raw: Any) -> Iterator[pa.RecordBatch]:
    """The batches, DuckDB's cache of the blocks already scanned evicted every
    EVICT_EVERY_ROWS rows. DuckDB keeps every block a query reads until memory runs
    short (80% of RAM by default), so a stream's memory grew with the table (412 MB at
    1M identify rows, 712-742 MB at 5M; 409 and 467 MB with this). A lower memory limit
    evicts what is not in use: it is set for a moment from a second connection (a
    statement on the first would end the stream), refused harmlessly when the query
    itself holds more, and the configured limit put back.

    Only for a database file with a limit: an in-memory database would be pushed out to
    temporary files, and an unlimited one (`-1`) cannot be written back as DuckDB shows
    it. DuckDB shows the limit rounded (`18.7 GiB`), so putting it back may lower it by
    a fraction of a percent; the file is closed after each read, which reapplies the
    configured one."""
    import duckdb

    side = raw.duplicate()  # a second connection to the same database
    try:
        (limit,) = side.execute("SELECT current_setting('memory_limit')").fetchone()
        (path,) = side.execute(
            "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
        ).fetchone()
        if path is None or "PiB" in limit:
            yield from reader
            return
        restore = f"SET memory_limit = '{limit}'"  # DuckDB's own text of the limit
        since = 0
        for batch in reader:
            yield batch
            since += batch.num_rows
            if since < EVICT_EVERY_ROWS:
                continue
            since = 0
            try:
                side.execute("SET memory_limit = '64MB'")
            except duckdb.Error:  # the query holds more now: evict later
                continue
            try:
                side.execute(restore)
            except duckdb.Error:  # not readable back as written: DuckDB's default
                side.execute("RESET memory_limit")
    finally:
        side.close()


def adbc_available() -> bool:
    try:
        import adbc_driver_postgresql.dbapi  # noqa: F401
    except ImportError:
        return False
    return True


def _adbc_uri(conn: Connection) -> str:
    url = conn.engine.url.set(drivername="postgresql")
    return url.render_as_string(hide_password=False)


def _postgres_batches(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """PostgreSQL through ADBC: binary COPY straight into Arrow."""
    import adbc_driver_postgresql.dbapi as adbc
    import psycopg

    statement, values, _ = _compile(clause, params, conn.dialect)
    driver = conn.connection.driver_connection
    if isinstance(driver, psycopg.Connection):
        # psycopg adapts each value to a literal for this connection; nothing is pasted.
        statement = psycopg.ClientCursor(driver).mogrify(statement, values)
    elif values:
        raise NotImplementedError("ADBC reading needs the psycopg driver for its parameters")
    try:
        adbc_conn = adbc.connect(_adbc_uri(conn))
    except Exception as exc:  # e.g. credentials given through connect_args, not the URL
        log.warning("ADBC cannot connect (%s); reading through SQLAlchemy instead", exc)
        return _sqlalchemy_batches(conn, clause, params, chunk_size)
    try:
        cursor = adbc_conn.cursor()
        cursor.execute(statement)
        reader = cursor.fetch_record_batch()
    except BaseException:
        adbc_conn.close()
        raise

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            yield from _rechunk(reader, chunk_size)
        finally:
            cursor.close()
            adbc_conn.close()

    return reader.schema, batches()


def _sqlalchemy_batches(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """Any SQLAlchemy dialect: a server-side cursor read `chunk_size` rows at a time."""
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
        clause, dict(params)
    )
    keys = list(result.keys())
    description = getattr(result.cursor, "description", None) or []
    dialect = conn.dialect.name
    types = (
        [described_type(d[1], dialect, _entry(d, 5), _entry(d, 4)) for d in description]
        if len(description) == len(keys)
        else None
    )

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while rows := result.fetchmany(chunk_size):
                yield rows_to_arrow(keys, [tuple(r) for r in rows], types)
        finally:
            result.close()

    schema = pa.schema(
        [pa.field(k, (types[i] if types else None) or pa.string()) for i, k in enumerate(keys)]
    )
    return schema, batches()


def native_path(conn: Connection) -> str:
    """Which reader a connection gets: `duckdb`, `adbc` or `sqlalchemy`."""
    name = conn.dialect.name
    if name == "duckdb":
        return "duckdb"
    if name == "postgresql" and conn.dialect.driver == "psycopg" and adbc_available():
        return "adbc"
    return "sqlalchemy"


def iter_batches(
    conn: Connection,
    clause: TextClause,
    params: Mapping[str, Any],
    chunk_size: int,
    *,
    native: bool = True,
    streaming: bool = False,
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The result's normalized schema and its batches of at most `chunk_size` rows.

    `native=False` forces the plain SQLAlchemy path (for comparisons and tests);
    `streaming`: the batches are dropped as they are read (DuckDB keeps its memory
    bounded meanwhile).
    """
    path = native_path(conn) if native else "sqlalchemy"
    log.debug("reading with the %s path, %s rows per batch", path, chunk_size)
    if path == "duckdb":
        schema, batches = _duckdb_batches(conn, clause, params, chunk_size, streaming)
    else:
        reader = _postgres_batches if path == "adbc" else _sqlalchemy_batches
        schema, batches = reader(conn, clause, params, chunk_size)
    return normalize_schema(schema), (normalize_batch(b) for b in batches if b.num_rows)


def iter_frames(
    conn: Connection,
    clause: TextClause,
    params: Mapping[str, Any],
    chunk_size: int,
    *,
    native: bool = True,
) -> Iterator[pd.DataFrame]:
    """Stream a query as DataFrames of at most `chunk_size` rows.

    Always yields at least one frame, empty but with the result's columns when there
    are no rows.
    """
    schema, batches = iter_batches(conn, clause, params, chunk_size, native=native, streaming=True)
    yielded = False
    for batch in batches:
        yielded = True
        yield arrow_to_frame(batch)
    if not yielded:
        yield arrow_to_frame(schema.empty_table())


def read_arrow(
    conn: Connection,
    clause: TextClause,
    params: Mapping[str, Any],
    chunk_size: int = 1_000_000,
    *,
    native: bool = True,
) -> pa.Table:
    """The whole result as one Arrow table (batches with columns typed differently, such
    as all-null ones from the SQLAlchemy path, are promoted to one type)."""
    schema, batches = iter_batches(conn, clause, params, chunk_size, native=native)
    tables = [pa.Table.from_batches([b]) for b in batches]
    if not tables:
        return schema.empty_table()
    table = (
        tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
    )
    del tables
    return _contiguous(table)


def _contiguous(table: pa.Table) -> pa.Table:
    """One chunk per column (what vectorized transforms expect), combined two columns at
    a time on two threads (Arrow copies without the GIL).

    A driver that exports whole batches (DuckDB's Arrow stream) frees a batch only once
    all its columns are released, so the rows are held twice until the last column is
    combined; leaving the pieces to each consumer measured slower and no smaller (columns
    are combined again per use)."""
    if all(column.num_chunks <= 1 for column in table.columns):
        return table
    names, columns = table.column_names, list(table.columns)
    del table

    def combine(i: int) -> None:
        column = columns[i]
        if column.num_chunks > 1:
            columns[i] = pa.chunked_array([column.combine_chunks()], type=column.type)

    with ThreadPoolExecutor(2, thread_name_prefix="combine") as pool:
        list(pool.map(combine, range(len(columns))))
    return pa.table(columns, names=names)


def read_frame(
    conn: Connection,
    clause: TextClause,
    params: Mapping[str, Any],
    chunk_size: int = 1_000_000,
    *,
    native: bool = True,
) -> pd.DataFrame:
    """The whole result as one DataFrame."""
    return arrow_to_frame(read_arrow(conn, clause, params, chunk_size, native=native))
