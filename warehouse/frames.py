"""Query results as Arrow record batches and DataFrames: the same types from every driver.

Four ways to read, the fastest one the backend has:

- DuckDB: the raw DuckDB connection behind SQLAlchemy runs the statement as a relation and
  exports Arrow record batches natively (no Python object per value, no DB-API copy).
- PostgreSQL: ADBC (`adbc-driver-postgresql`, in the `postgres` extra) streams the result
  through binary COPY into Arrow in C++. COPY takes no bind parameters, so the values are
  bound client-side by psycopg's own literal adaptation (never pasted strings).
- Snowflake and BigQuery: SQLAlchemy runs the statement, their driver hands the result
  over as Arrow (Snowflake's result chunks, BigQuery's Storage Read API; `arrow_results`).
- Anything else (Redshift, PostgreSQL without ADBC), or a result a driver has no Arrow
  for: SQLAlchemy with a server-side cursor (`stream_results`), `fetchmany(chunk_size)`
  into Arrow.

Every batch is normalized to one schema per Segment type (`timestamp[us, UTC]`, `string`,
`int64`, `double`, `bool`), so the DataFrames are identical whichever path read them.
Other types keep their exact Arrow type for the transforms to write as JSON: decimals
(never floats), `uint64` (UBIGINT beyond int64), intervals, bytes, lists and structs.
UUIDs, JSON and PostgreSQL network addresses become text, PostgreSQL `money` its amount
(a decimal), and a DB-API value Arrow has no type for its text: no column type stops a read.
A column's type comes from its declared type where the driver says it, never from one
chunk's values.
Memory is bounded by `chunk_size` rows per batch: nothing here holds a whole result
unless `read_frame`/`read_arrow` is asked for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import suppress
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.warehouse.arrow_results import ARROW_RESULTS, record_batches
from sqlalchemy import TextClause
from sqlalchemy.engine import Connection, Dialect

log = logging.getLogger(__name__)

UTC_MICROS = pa.timestamp("us", tz="UTC")


# -- one schema out of every driver --------------------------------------------------------


def normalize_type(dtype: pa.DataType) -> pa.DataType:
    """The Segment-canonical Arrow type for a driver's type."""
    if isinstance(dtype, pa.BaseExtensionType):
        return pa.string() if _extension_as_text(dtype) is not None else dtype
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
    if pa.types.is_uint64(dtype):
        return dtype  # UBIGINT: values above the int64 maximum would not fit
    if pa.types.is_integer(dtype):
        return pa.int64()
    if pa.types.is_floating(dtype):
        return pa.float64()
    return dtype  # decimals stay exact; the transforms write each type's JSON


# -- types the drivers hand over as extensions: their text ----------------------------------


def _uuid_text(storage: pa.Array) -> pa.Array:
    """16-byte UUIDs as their canonical text (`8-4-4-4-12` lower-case hex)."""
    n = len(storage)
    octets = np.frombuffer(storage.buffers()[1], dtype=np.uint8)
    octets = octets[storage.offset * 16 : (storage.offset + n) * 16].reshape(n, 16)
    hexes = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
    text = np.full((n, 36), ord("-"), dtype=np.uint8)
    at = [i for i in range(36) if i not in (8, 13, 18, 23)]
    text[:, at[0::2]] = hexes[octets >> 4]
    text[:, at[1::2]] = hexes[octets & 15]
    offsets = np.arange(0, 36 * (n + 1), 36, dtype=np.int32)
    strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    if not storage.null_count:
        return strings
    return pc.if_else(storage.is_valid(), strings, pa.scalar(None, pa.string()))


def _inet_text(storage: pa.Array) -> pa.Array:
    """PostgreSQL `inet`/`cidr` in their binary wire form (family, bits, is_cidr, length,
    address: what ADBC passes on) as PostgreSQL writes them: `10.0.0.1`, `10.0.0.0/8`."""
    import ipaddress

    def text(raw: bytes | None) -> str | None:
        if raw is None:
            return None
        bits, is_cidr, address = raw[1], raw[2], raw[4:]
        ip = ipaddress.ip_address(address)
        whole = bits == ip.max_prefixlen and not is_cidr
        return str(ip) if whole else f"{ip}/{bits}"

    return pa.array([text(v) for v in storage.to_pylist()], pa.string())


def _mac_text(storage: pa.Array) -> pa.Array:
    """PostgreSQL `macaddr`/`macaddr8` bytes as `08:00:2b:01:02:03`."""
    texts = [None if v is None else ":".join(f"{b:02x}" for b in v) for v in storage.to_pylist()]
    return pa.array(texts, pa.string())


#: PostgreSQL types ADBC passes on as opaque bytes, and how each is written as text. Others
#: stay as they are: `numeric` (opaque text) is made an exact number by the transforms, and
#: a type with no JSON form is left out and reported there (`transforms.values`).
_OPAQUE_AS_TEXT = {
    "inet": _inet_text,
    "cidr": _inet_text,
    "macaddr": _mac_text,
    "macaddr8": _mac_text,
}


def _extension_as_text(dtype: pa.DataType) -> Callable[[pa.Array], pa.Array] | None:
    """How an extension type's storage becomes text; None when it stays as it is."""
    if isinstance(dtype, pa.UuidType):
        return _uuid_text
    if isinstance(dtype, pa.JsonType):
        return lambda storage: storage.cast(pa.string())
    if isinstance(dtype, pa.OpaqueType) and dtype.vendor_name == "PostgreSQL":
        return _OPAQUE_AS_TEXT.get(dtype.type_name)
    return None


def normalize_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([pa.field(f.name, normalize_type(f.type)) for f in schema])


def _normalize_column(array: pa.Array | pa.ChunkedArray, target: pa.DataType) -> pa.Array:
    dtype = array.type
    if dtype == target:
        return array
    if isinstance(dtype, pa.BaseExtensionType):
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
        as_text = _extension_as_text(dtype)
        return array if as_text is None else as_text(array.storage)
    if pa.types.is_timestamp(dtype) and dtype.unit == "ns":  # DuckDB TIMESTAMP_NS: to the µs
        array = pc.cast(array, pa.timestamp("us", dtype.tz), safe=False)
        dtype = array.type
    if pa.types.is_decimal(dtype) and pa.types.is_floating(target):
        # Arrow's decimal -> double cast scales in binary (19.99 -> 19.990000000000002):
        # through the decimal's text, the double nearest the written digits
        return pc.cast(pc.cast(array, pa.string()), target)
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


#: PostgreSQL `money`: an amount with two decimals (its usual `lc_monetary` scale).
MONEY = pa.decimal128(38, 2)
#: PostgreSQL `numeric` without a declared precision, as ADBC reads it: its values' text
#: (any scale, `NaN`, `Infinity`), made an exact number by the transforms. The rows path
#: reads it as this type too, so every chunk of such a column has one type.
NUMERIC_TEXT = pa.opaque(pa.string(), type_name="numeric", vendor_name="PostgreSQL")
_MONEY_OID = 790

#: PostgreSQL/Redshift type OIDs (psycopg, psycopg2 and ADBC report them) for Segment types.
_PG_OIDS = {
    _MONEY_OID: MONEY,
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
#: Type names that fix a precision and scale, per dialect (BigQuery's NUMERIC is (38, 9)).
_DECIMAL_NAMES = {"bigquery": {"NUMERIC": pa.decimal128(38, 9), "DECIMAL": pa.decimal128(38, 9)}}


def described_type(
    type_code: Any,
    dialect: str = "postgresql",
    scale: int | None = None,
    precision: int | None = None,
) -> pa.DataType | None:
    """The Arrow type of a DB-API `description` type code, when it names one: the table's
    declared type, which fixes a column's type whatever values a chunk holds. A decimal
    of declared precision stays exact (decimal128); one without (PostgreSQL's bare
    NUMERIC) is its exact text (`NUMERIC_TEXT`), elsewhere a float."""
    if isinstance(type_code, int) and not isinstance(type_code, bool):
        if _DECIMAL_CODES.get(dialect) == type_code:
            if dialect == "snowflake" and not scale:
                return pa.int64()  # NUMBER(p, 0): Segment's integers
            if precision and scale is not None and 0 < precision <= 38:
                return pa.decimal128(precision, scale)
            return NUMERIC_TEXT if dialect in ("postgresql", "redshift") else pa.float64()
        return DESCRIBED_CODES.get(dialect, {}).get(type_code)
    name = str(type_code).upper()
    if (decimal := _DECIMAL_NAMES.get(dialect, {}).get(name)) is not None:
        return decimal
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
    arrays = [
        _as_declared(_python_column(list(col), dtype), dtype)
        for col, dtype in zip(columns, types, strict=True)
    ]
    return normalize_batch(pa.RecordBatch.from_arrays(arrays, names=keys))


def _as_declared(array: pa.Array, dtype: pa.DataType | None) -> pa.Array:
    """A column read from a driver in its declared type (the same type in every chunk,
    whatever values a chunk holds): all NULL, the declared type (else text); values the
    declared type cannot hold (a HUGEINT) stay as they came."""
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), dtype or pa.string())
    if pa.types.is_timestamp(array.type):
        array = _infinite_edges(array)
    if dtype is not None and _declared_wins(array.type, dtype):
        with suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError, OverflowError):
            array = _normalize_column(array, dtype)
    return array


def _infinite_edges(array: pa.Array) -> pa.Array:
    """Timestamps with datetime's own extremes (how DuckDB's and, configured so, psycopg's
    drivers hand over `infinity` and `-infinity`) as Arrow's, the int64 extremes the native
    readers give: a time no payload can carry, rejected with its reason downstream."""
    unit = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}[array.type.unit]
    ints = array.cast(pa.int64())
    top = 253_402_300_800 * unit - 1  # 9999-12-31T23:59:59.999999 (in this unit)
    bottom = -62_135_596_800 * unit  # 0001-01-01T00:00:00
    high, low = pc.greater_equal(ints, top), pc.less_equal(ints, bottom)
    if not (pc.any(high).as_py() or pc.any(low).as_py()):
        return array
    big, small = np.iinfo(np.int64).max, np.iinfo(np.int64).min
    ints = pc.if_else(high, big, pc.if_else(low, small, ints))
    return ints.cast(array.type)


def _declared_wins(inferred: pa.DataType, declared: pa.DataType) -> bool:
    """Whether values of `inferred` type take the `declared` one: Segment's own types do,
    and a decimal takes its declared precision; other types (a decimal declared only as
    `numeric`, intervals, bytes) keep what the values are: a type code does not say their
    scale or unit."""
    if normalize_type(inferred) == declared:
        return False
    if pa.types.is_decimal(inferred):
        return pa.types.is_decimal(declared)
    return _basic(inferred)


def _basic(dtype: pa.DataType) -> bool:
    """One of Segment's own types (bool, integer, float, text, timestamp)."""
    return (
        pa.types.is_boolean(dtype)
        or pa.types.is_integer(dtype)
        or pa.types.is_floating(dtype)
        or pa.types.is_string(dtype)
        or pa.types.is_large_string(dtype)
        or pa.types.is_timestamp(dtype)
    )


def _decimal_text(value: Any) -> str:
    """A driver's NUMERIC value as PostgreSQL writes it (never in exponent form)."""
    if isinstance(value, Decimal):
        return format(value, "f") if value.is_finite() else str(value)
    return str(value)


def _python_column(values: list[Any], dtype: pa.DataType | None) -> pa.Array:
    """One column of DB-API values as Arrow: its inferred type; PostgreSQL `money` text
    (`$1,234.56`) as its amount; integers beyond int64 as uint64; any other value Arrow
    has no type for (an IPv4Address, a Decimal NaN, ...) as its text."""
    if dtype == NUMERIC_TEXT:
        texts = [None if v is None else _decimal_text(v) for v in values]
        return pa.ExtensionArray.from_storage(NUMERIC_TEXT, pa.array(texts, pa.string()))
    if dtype == MONEY and any(isinstance(v, str) for v in values):
        amounts = pc.replace_substring_regex(pa.array(values, pa.string()), r"[^0-9.\-]", "")
        return amounts.cast(MONEY)
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    if all(v is None or (isinstance(v, int) and v >= 0) for v in values):
        try:
            return pa.array(values, pa.uint64())
        except (pa.ArrowInvalid, OverflowError):
            pass
    return pa.array([None if v is None else str(v) for v in values], pa.string())


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
    money = _money_columns(driver, statement, reader.schema)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in _rechunk(reader, chunk_size):
                yield _cents_as_money(batch, money) if money else batch
        finally:
            cursor.close()
            adbc_conn.close()

    schema = reader.schema
    for i in money:
        schema = schema.set(i, pa.field(schema.field(i).name, MONEY))
    return schema, batches()


def _money_columns(driver: Any, statement: str, schema: pa.Schema) -> list[int]:
    """Positions of the `money` columns of a statement: ADBC hands them over as int64
    cents with nothing to tell them from integers, so their types are asked of the server
    (a describe of the statement on the psycopg connection: nothing runs)."""
    import psycopg

    if not isinstance(driver, psycopg.Connection) or not any(
        pa.types.is_int64(f.type) for f in schema
    ):
        return []
    try:
        pgconn = driver.pgconn
        prepared = pgconn.prepare(b"", statement.encode())
        if prepared.status != psycopg.pq.ExecStatus.COMMAND_OK:
            return []
        described = pgconn.describe_prepared(b"")
        oids = [described.ftype(i) for i in range(described.nfields)]
    except psycopg.Error as exc:
        log.warning("cannot describe the statement's column types (%s)", exc)
        return []
    if len(oids) != len(schema):
        return []
    return [i for i, oid in enumerate(oids) if oid == _MONEY_OID]


def _cents_as_money(batch: pa.RecordBatch, money: list[int]) -> pa.RecordBatch:
    """The `money` columns (int64 cents) as exact amounts: the same integers read as
    decimals of scale 2 (a decimal's storage is its unscaled integer)."""
    columns = list(batch.columns)
    for i in money:
        cents = columns[i].cast(pa.decimal128(38, 0))
        columns[i] = pa.Array.from_buffers(MONEY, len(cents), cents.buffers(), offset=cents.offset)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _execute_described(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> tuple[Any, list[str], list[pa.DataType | None] | None]:
    """Run the statement on a server-side cursor: the result, its column names and each
    column's declared Arrow type (from the cursor's description, where the driver says)."""
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
    return result, keys, types


def _declared_schema(keys: list[str], types: list[pa.DataType | None] | None) -> pa.Schema:
    return pa.schema(
        [pa.field(k, (types[i] if types else None) or pa.string()) for i, k in enumerate(keys)]
    )


def _sqlalchemy_batches(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> tuple[pa.Schema | None, Iterator[pa.RecordBatch]]:
    """Any SQLAlchemy dialect: a server-side cursor read `chunk_size` rows at a time."""
    return _row_batches(*_execute_described(conn, clause, params, chunk_size), chunk_size)


def _row_batches(
    result: Any, keys: list[str], types: list[pa.DataType | None] | None, chunk_size: int
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    def batches() -> Iterator[pa.RecordBatch]:
        try:
            while rows := result.fetchmany(chunk_size):
                yield rows_to_arrow(keys, [tuple(r) for r in rows], types)
        finally:
            result.close()

    return _declared_schema(keys, types), batches()


def _driver_arrow_batches(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """Snowflake, BigQuery: SQLAlchemy runs the statement and the driver hands its result
    over as Arrow (`arrow_results`), each column cast to its declared type; the same
    result's rows where the driver has no Arrow for it."""
    result, keys, types = _execute_described(conn, clause, params, chunk_size)
    try:
        pieces = ARROW_RESULTS[conn.dialect.name](result.cursor, conn.connection.dbapi_connection)
    except BaseException:
        result.close()
        raise
    if pieces is None:
        return _row_batches(result, keys, types, chunk_size)
    declared = types or [None] * len(keys)

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in _rechunk(record_batches(pieces), chunk_size):
                arrays = [
                    _as_declared(column, dtype)
                    for column, dtype in zip(batch.columns, declared, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, names=keys)
        finally:
            result.close()

    return _declared_schema(keys, types), batches()


def native_path(conn: Connection) -> str:
    """Which reader a connection gets: `duckdb`, `adbc`, `snowflake-arrow`,
    `bigquery-arrow` or `sqlalchemy`."""
    name = conn.dialect.name
    if name == "duckdb":
        return "duckdb"
    if name == "postgresql" and conn.dialect.driver == "psycopg" and adbc_available():
        return "adbc"
    if name in ARROW_RESULTS:
        return f"{name}-arrow"
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
        reader = {"adbc": _postgres_batches, "sqlalchemy": _sqlalchemy_batches}.get(
            path, _driver_arrow_batches
        )
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
