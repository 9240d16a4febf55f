"""Snowflake through fakesnow (in-process patch of the Snowflake connector), with
Segment's Snowflake layout: unquoted upper-case names, `TIMESTAMP_TZ` event times,
`TIMESTAMP_NTZ` load times, `NUMBER(38,2)` decimals."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.warehouse.frames import iter_batches, native_path

from tests.integration.dialects.golden import (
    Layout,
    check_golden_and_incremental,
    create_tables,
    insert_rows,
)
from tests.integration.dialects.requirements import require
from tests.segment_rows import sandbox_settings

SNOWFLAKE = Layout(
    {
        "text": "VARCHAR",
        "ts": "TIMESTAMP_TZ",
        "loaded": "TIMESTAMP_NTZ",
        "bool": "BOOLEAN",
        "decimal": "NUMBER(38,2)",
        "int": "NUMBER(38,0)",
    }
)
URL = "snowflake://user:secret@account/segment_db"


#: Rows per Arrow result chunk the emulated connector hands out (Snowflake's own chunks
#: hold thousands): small, so that a column's first chunks can be all NULL.
RESULT_CHUNK = 2


def _fetch_arrow_batches(cursor, force_microsecond_precision: bool = False) -> list[pa.Table]:
    """The connector's `fetch_arrow_batches`, over the Arrow table fakesnow holds."""
    table = cursor._arrow_table
    return [pa.Table.from_batches([b]) for b in table.to_batches(RESULT_CHUNK)]


@pytest.fixture
def snowflake(monkeypatch) -> Iterator[str]:
    """A fresh fakesnow database for this test; the job's URL into it."""
    require("snowflake.sqlalchemy", "snowflake")
    fakesnow = require("fakesnow", "snowflake")
    from fakesnow.cursor import FakeSnowflakeCursor

    # fakesnow 0.12.1's cursor has no `fetch_arrow_batches` (the real connector's Arrow
    # result, which the job reads Snowflake through): given here, in the fixture.
    monkeypatch.setattr(
        FakeSnowflakeCursor, "fetch_arrow_batches", _fetch_arrow_batches, raising=False
    )
    with fakesnow.patch():
        yield URL


def test_golden_and_incremental_on_snowflake(snowflake, sandbox, tmp_path) -> None:
    writer = sa.create_engine(snowflake)

    def write(rows):
        with writer.begin() as conn:
            if "identifies" not in sa.inspect(conn).get_table_names(schema="segment"):
                create_tables(conn, "segment", SNOWFLAKE)
            insert_rows(conn, "segment", rows)

    settings = sandbox_settings(snowflake, "segment", sandbox, chunk_size=4)
    try:
        check_golden_and_incremental(settings, write, sandbox, tmp_path)
    finally:
        writer.dispose()


def test_snowflake_is_read_through_its_arrow_result_as_the_rows_read(snowflake) -> None:
    """The Arrow path gives the row path's types and values: NUMBER(38,2) exact, NUMBER(38,0)
    int64, both timestamp kinds UTC, a column NULL in the first result chunks still typed."""
    engine = sa.create_engine(snowflake)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE SCHEMA segment"))
        conn.execute(
            sa.text(
                "CREATE TABLE segment.t (name VARCHAR, ltv NUMBER(38,2), age NUMBER(38,0),"
                " seen TIMESTAMP_TZ, loaded TIMESTAMP_NTZ, beta BOOLEAN)"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO segment.t VALUES (NULL, NULL, NULL, NULL, NULL, NULL),"
                " (NULL, NULL, NULL, NULL, NULL, NULL), (NULL, NULL, NULL, NULL, NULL, NULL),"
                " ('a', 858.18, 41, '2026-11-01 10:00:00+02:00', '2026-11-01 09:00:00', TRUE)"
            )
        )
    query = sa.text("SELECT * FROM segment.t ORDER BY name NULLS FIRST")
    read = {}
    for native in (True, False):
        with engine.connect() as conn:
            schema, batches = iter_batches(conn, query, {}, 2, native=native)
            batches = list(batches)
            read[native] = (schema, [b.schema for b in batches], pa.Table.from_batches(batches))
            if native:
                assert native_path(conn) == "snowflake-arrow"
    engine.dispose()
    (schema, batch_schemas, table), rows = read[True], read[False]
    assert schema == rows[0] and all(s == schema for s in batch_schemas)
    assert table.equals(rows[2])
    assert str(schema.field("ltv").type) == "decimal128(38, 2)"
    assert table.column("ltv").to_pylist()[-1] == Decimal("858.18")
    assert str(schema.field("age").type) == "int64"
    assert str(schema.field("loaded").type) == "timestamp[us, tz=UTC]"


def test_a_cursor_without_arrow_results_is_read_as_rows(snowflake, monkeypatch) -> None:
    from fakesnow.cursor import FakeSnowflakeCursor

    monkeypatch.delattr(FakeSnowflakeCursor, "fetch_arrow_batches")
    engine = sa.create_engine(snowflake)
    with engine.connect() as conn:
        _, batches = iter_batches(conn, sa.text("SELECT 1 AS one, 'x' AS two"), {}, 10)
        assert pa.Table.from_batches(list(batches)).to_pylist() == [{"one": 1, "two": "x"}]
    engine.dispose()
