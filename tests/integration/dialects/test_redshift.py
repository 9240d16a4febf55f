"""The Redshift dialect (sqlalchemy-redshift over psycopg2) against the CI PostgreSQL.

PostgreSQL stands in for Redshift's wire protocol and SQL; what differs and matters here:
Redshift's dialect asks for SSL by default, its inspector reads Redshift-only catalog
columns, and Redshift has no `ON CONFLICT` (the state store must not use it).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.segment import SegmentSource
from connect_sync.warehouse.state import StateStore

from tests.integration.dialects.golden import (
    POSTGRES,
    check_golden_and_incremental,
    create_tables,
    insert_rows,
)
from tests.integration.dialects.requirements import require
from tests.segment_rows import sandbox_settings

pytestmark = pytest.mark.postgres


def redshift_url(postgres_url: str) -> str:
    """The test PostgreSQL through the Redshift dialect; no SSL there (see README)."""
    url = sa.engine.make_url(postgres_url).set(drivername="redshift+psycopg2")
    return url.update_query_dict({"sslmode": "disable"}).render_as_string(hide_password=False)


@pytest.fixture
def redshift(postgres_url: str, pg_schema: str) -> str:
    require("sqlalchemy_redshift", "redshift")
    require("psycopg2", "redshift")
    return redshift_url(postgres_url)


@pytest.fixture
def executed() -> Iterator[list[str]]:
    """Every statement run through the Redshift dialect meanwhile, upper-cased."""
    seen: list[str] = []

    def record(conn, cursor, statement, *args) -> None:
        if conn.dialect.name == "redshift":
            seen.append(statement.upper())

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    yield seen
    sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)


def test_golden_and_incremental_through_the_redshift_dialect(
    redshift, postgres_url, pg_schema, sandbox, tmp_path, executed
) -> None:
    writer = sa.create_engine(postgres_url)

    def write(rows):
        with writer.begin() as conn:
            if not sa.inspect(conn).has_table("identifies", schema=pg_schema):
                create_tables(conn, pg_schema, POSTGRES)
            insert_rows(conn, pg_schema, rows)

    settings = sandbox_settings(redshift, pg_schema, sandbox, chunk_size=4)
    try:
        check_golden_and_incremental(settings, write, sandbox, tmp_path)
    finally:
        writer.dispose()
    assert any(s.startswith("CREATE TEMPORARY TABLE") for s in executed)
    assert not [s for s in executed if "ON CONFLICT" in s]  # Redshift has none


def test_tables_and_columns_are_listed_without_redshift_only_catalogs(
    redshift, postgres_url, pg_schema
) -> None:
    with sa.create_engine(postgres_url).begin() as conn:
        create_tables(conn, pg_schema, POSTGRES)
    source = SegmentSource(create_engine(redshift), pg_schema)
    assert {"identifies", "aliases", "tracks", "order_completed"} <= source.tables()
    assert source.columns("identifies")[:2] == ["id", "anonymous_id"]
    source.check()


def test_a_missing_schema_is_named_through_the_redshift_dialect(redshift) -> None:
    from connect_sync.warehouse.errors import WarehouseError

    with pytest.raises(WarehouseError, match="schema 'no_such_schema' not found"):
        SegmentSource(create_engine(redshift), "no_such_schema").tables()


def test_state_store_upserts_without_on_conflict(redshift, pg_schema, executed) -> None:
    from datetime import UTC, datetime

    store = StateStore(create_engine(redshift), f"{pg_schema}_state", pg_schema)
    store.migrate()
    store.migrate()  # idempotent
    t1, t2 = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 2, tzinfo=UTC)
    store.move_cursor("tracks", t1, "r1")
    store.move_cursor("tracks", t2, "r2")
    store.record_delivered("event", ["m1", "m2"], "r1")
    store.record_delivered("event", ["m2", "m3"], "r2")
    store.record_fingerprints([("u1", "a"), ("u2", "b")], "r1")
    store.record_fingerprints([("u1", "c")], "r2")
    assert store.cursors() == {"tracks": t2}
    assert store.delivered_among("event", ["m1", "m2", "m3", "m4"]) == {"m1", "m2", "m3"}
    assert store.fingerprints(["u1", "u2"]) == {"u1": "c", "u2": "b"}
    assert not [s for s in executed if "ON CONFLICT" in s]


def test_sslmode_is_the_users_choice_and_ssl_errors_are_one_line(
    postgres_url, pg_schema, tmp_path
) -> None:
    require("sqlalchemy_redshift", "redshift")
    url = sa.engine.make_url(postgres_url).set(drivername="redshift+psycopg2")
    env = {
        **os.environ,
        "CONNECT_SYNC_WAREHOUSE_URL": url.render_as_string(hide_password=False),
        "CONNECT_SYNC_SOURCE_SCHEMA": pg_schema,
        "CONNECT_API_KEY": "k",
        "CONNECT_API_URL": "http://127.0.0.1:9",
    }
    result = subprocess.run(
        [sys.executable, "-m", "connect_sync", "sync"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    # The dialect's default is verify-full SSL, which the test server does not offer.
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
