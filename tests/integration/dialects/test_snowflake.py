"""Snowflake through fakesnow (in-process patch of the Snowflake connector), with
Segment's Snowflake layout: unquoted upper-case names, `TIMESTAMP_TZ` event times,
`TIMESTAMP_NTZ` load times, `NUMBER(38,2)` decimals."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

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


@pytest.fixture
def snowflake() -> Iterator[str]:
    """A fresh fakesnow database for this test; the job's URL into it."""
    require("snowflake.sqlalchemy", "snowflake")
    fakesnow = require("fakesnow", "snowflake")
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
