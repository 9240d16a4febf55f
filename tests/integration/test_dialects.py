"""Every read statement compiles for every warehouse dialect, quoted and typed for it.

DuckDB and PostgreSQL also run for real (test_warehouse.py), and Snowflake, Redshift and
BigQuery against emulators (tests/integration/dialects/); here every statement is compiled
with each SQLAlchemy dialect (the `snowflake`, `redshift` and `bigquery` extras): skipped
locally when a package is missing, a failure in CI.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.warehouse.frames import (
    NUMERIC_TEXT,
    UTC_MICROS,
    described_type,
    normalize_batch,
    rows_to_arrow,
)
from connect_sync.warehouse.segment import SegmentSource, Window

from tests.integration.dialects.requirements import require

DIALECTS = {
    "duckdb": ("duckdb_engine", "duckdb://"),
    "postgresql": ("psycopg", "postgresql+psycopg://"),
    "redshift": ("sqlalchemy_redshift", "redshift+psycopg2://"),
    "snowflake": ("snowflake.sqlalchemy", "snowflake://"),
    "bigquery": ("sqlalchemy_bigquery", "bigquery://"),
}

WINDOW = Window("uuid_ts", datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC))
COLUMNS = ["id", "user_id", "anonymous_id", "timestamp", "plan", "select"]


def _dialect(name: str) -> sa.Dialect:
    module, url = DIALECTS[name]
    require(module, {"postgresql": "postgres"}.get(name, name))
    cls = sa.engine.make_url(url).get_dialect()
    return cls(dbapi=cls.import_dbapi())  # as create_engine builds it: the driver's paramstyle


def _statements(source: SegmentSource) -> dict[str, tuple[sa.TextClause, dict]]:
    w = WINDOW.params
    # DuckDB's own statement takes the ids as one list parameter (see iter_identifies)
    ids = {"id_list" if source.engine.dialect.name == "duckdb" else "ids": ["a", "b"]}
    # the link statements run once per link source: here the alias source
    link = {"table": "aliases", "from_column": "previous_id", "to_column": "user_id"}
    link_stats = {"until": WINDOW.until}
    links_loaded = link_stats | {"since": WINDOW.since}
    return {
        "identity_links": (source.clause("identity_links", {}, **link), {}),
        "identity_links_loaded": (
            source.clause("identity_links_loaded", links_loaded, **link),
            links_loaded,
        ),
        "identity_link_stats": (
            source.clause("identity_link_stats", link_stats, **link),
            link_stats,
        ),
        "aliases_window": (
            source.clause("aliases_window", w, aliases="aliases", window="uuid_ts"),
            w,
        ),
        "touched_ids": (
            source.clause("touched_ids", w, identifies="identifies", window="uuid_ts"),
            w,
        ),
        "identifies_all": (
            source.clause("identifies_all", {}, identifies="identifies", columns=COLUMNS),
            {},
        ),
        "identifies_for_ids": (
            source.clause("identifies_for_ids", ids, identifies="identifies", columns=COLUMNS),
            ids,
        ),
        "tracks_window": (source.clause("tracks_window", w, tracks="tracks", window="uuid_ts"), w),
        "tracks_in_window": (
            source.clause("tracks_in_window", w, tracks="tracks", window="uuid_ts"),
            w,
        ),
        "event_properties": (
            source.clause(
                "event_properties",
                w,
                table="_101_account_update",
                window="received_at",
                columns=["id", "plan"],
            ),
            w,
        ),
        "table_columns": (source.clause("table_columns", {"schema": "s"}), {"schema": "s"}),
        "probe_table": (source.clause("probe_table", {}, table="identifies"), {}),
    }


def _compile(clause: sa.TextClause, params: dict, dialect: sa.Dialect) -> str:
    bound = clause.bindparams(**params) if params else clause
    return str(bound.compile(dialect=dialect, compile_kwargs={"render_postcompile": True}))


@pytest.mark.parametrize("name", list(DIALECTS))
def test_every_read_statement_compiles(name: str) -> None:
    dialect = _dialect(name)
    source = SegmentSource(SimpleNamespace(dialect=dialect), "ios_prod")  # type: ignore[arg-type]
    quote = dialect.identifier_preparer.quote

    for statement, (clause, params) in _statements(source).items():
        compiled = _compile(clause, params, dialect)
        assert "{" not in compiled, (statement, compiled)
        assert ":since" not in compiled and ":ids" not in compiled, (statement, compiled)
        no_event_time = ("table_columns", "probe_table", "identifies_all", "touched_ids")
        if statement not in (*no_event_time, "identity_link_stats"):
            assert quote("timestamp") in compiled or statement == "event_properties"
        if statement == "identifies_all":
            assert quote("select") in compiled  # a reserved word as a trait name
        if statement == "event_properties":
            assert quote("_101_account_update") in compiled  # Redshift-style digit table


def test_bigquery_quotes_with_backticks_and_types_window_bounds() -> None:
    dialect = _dialect("bigquery")
    source = SegmentSource(SimpleNamespace(dialect=dialect), "ios_prod")  # type: ignore[arg-type]
    for statement, (clause, params) in _statements(source).items():
        compiled = _compile(clause, params, dialect)
        assert '"' not in compiled, (statement, compiled)  # double quotes are strings there
    tracks, params = _statements(source)["tracks_window"]
    compiled = _compile(tracks, params, dialect)
    assert "`timestamp`" in compiled
    assert "since:TIMESTAMP" in compiled  # TIMESTAMP columns compare with TIMESTAMP params
    columns, params = _statements(source)["table_columns"]
    assert "`ios_prod`.INFORMATION_SCHEMA.COLUMNS" in _compile(columns, params, dialect)


def test_snowflake_leaves_case_insensitive_names_unquoted() -> None:
    dialect = _dialect("snowflake")
    source = SegmentSource(SimpleNamespace(dialect=dialect), "ios_prod")  # type: ignore[arg-type]
    tracks, params = _statements(source)["tracks_window"]
    compiled = _compile(tracks, params, dialect)
    # Snowflake upper-cases unquoted names; a quoted "timestamp" would not match TIMESTAMP.
    assert '"timestamp"' not in compiled
    assert "ios_prod.tracks" in compiled


@pytest.mark.parametrize(
    ("array", "expected"),
    [
        (pa.array([datetime(2026, 1, 1, 12)], pa.timestamp("ns")), UTC_MICROS),
        (pa.array([datetime(2026, 1, 1, 12)], pa.timestamp("ms", tz="Etc/UTC")), UTC_MICROS),
        # exact, never a float (#19: NUMBER(38,2) 858.18 was sent as 858.1800000000001)
        (pa.array([Decimal("1.50"), None], pa.decimal128(10, 2)), pa.decimal128(10, 2)),
        (pa.array([2**64 - 1], pa.uint64()), pa.uint64()),  # UBIGINT max does not fit int64
        (pa.array([1, None], pa.int32()), pa.int64()),
        (pa.array(["a", None], pa.large_string()), pa.string()),
        (pa.array(["a", "a", None]).dictionary_encode(), pa.string()),
        (pa.array([1.5], pa.float32()), pa.float64()),
        (pa.array([True, None]), pa.bool_()),
    ],
)
def test_driver_types_normalize_to_segment_types(array: pa.Array, expected: pa.DataType) -> None:
    batch = normalize_batch(pa.record_batch({"c": array}))
    assert batch.schema.field("c").type == expected
    if pa.types.is_timestamp(expected):
        # A timestamp without a zone (Redshift, Snowflake NTZ) is UTC.
        assert batch.column(0)[0].as_py() == datetime(2026, 1, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (20, pa.int64()),
        (1184, UTC_MICROS),
        ("TIMESTAMP WITH TIME ZONE", UTC_MICROS),
        ("VARCHAR", pa.string()),
        ("BIGINT", pa.int64()),
        ("DOUBLE", pa.float64()),
        ("BOOLEAN", pa.bool_()),
        ("GEOGRAPHY", None),
    ],
)
def test_described_types_of_all_null_columns(code, expected) -> None:
    assert described_type(code) == expected


@pytest.mark.parametrize(
    ("code", "scale", "expected"),
    [
        (13, None, pa.bool_()),  # BOOLEAN (13 is no PostgreSQL type)
        (16, None, None),  # not a Snowflake code: never read as PostgreSQL's boolean
        (7, None, UTC_MICROS),  # TIMESTAMP_TZ
        (8, None, UTC_MICROS),  # TIMESTAMP_NTZ
        (2, None, pa.string()),  # TEXT
        (0, 0, pa.int64()),  # NUMBER(38,0)
        (0, 2, pa.decimal128(38, 2)),  # NUMBER(38,2): exact
    ],
)
def test_snowflake_type_codes_are_snowflakes(code, scale, expected) -> None:
    assert described_type(code, "snowflake", scale, 38) == expected


def test_declared_decimals_stay_exact_across_chunks() -> None:
    declared = [described_type(1700, "postgresql", 2, 38)]
    small = rows_to_arrow(["ltv"], [(Decimal("0.10"),)], declared)
    large = rows_to_arrow(["ltv"], [(Decimal("1234567890123.45"),)], declared)
    assert small.schema == large.schema == pa.schema([("ltv", pa.decimal128(38, 2))])
    assert large.column(0)[0].as_py() == Decimal("1234567890123.45")
    # bare NUMERIC (no scale): its exact text, as ADBC reads it, never a float
    assert described_type(1700, "postgresql") == NUMERIC_TEXT
    assert described_type(1700, "redshift") == NUMERIC_TEXT


def test_a_declared_type_wins_over_the_values_of_a_chunk() -> None:
    all_null = rows_to_arrow(["ltv"], [(None,), (None,)], [pa.float64()])
    whole = rows_to_arrow(["ltv"], [(1,), (None,)], [pa.float64()])  # whole numbers only
    assert all_null.schema == whole.schema == pa.schema([("ltv", pa.float64())])


def test_dialect_extras_are_declared() -> None:
    import tomllib
    from pathlib import Path

    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"  # whatever the cwd
    extras = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]
    assert any("adbc-driver-postgresql" in d for d in extras["postgres"])
    assert any("sqlalchemy-redshift" in d for d in extras["redshift"])
    assert any("snowflake-sqlalchemy" in d for d in extras["snowflake"])
    assert any("sqlalchemy-bigquery" in d for d in extras["bigquery"])
    importlib.import_module("connect_sync.sql")
