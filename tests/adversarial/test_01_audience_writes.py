"""Audience SQL cannot write (issues 17.1, 21): the parser check and the read-only run each
stop a write on their own, on real DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.audience import AudienceError, load_audience, run_read_only
from connect_sync.warehouse.audience_sql import prepare_audience

from tests.segment_rows import row, write_tables

START = datetime(2026, 1, 1, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)

#: Issue 17.1, verbatim but for the victim's schema: exit 0 and the table dropped, before.
ATTACK = (
    "SELECT E'\\'' AS user_id) AS audience; COMMIT; DROP TABLE {victim}.t; "
    "SELECT * FROM (SELECT '1' AS user_id"
)


@pytest.fixture
def db(warehouse) -> Iterator[tuple[sa.Engine, str, str]]:
    """(engine, source schema, victim schema) with a victim table and a sequence at 1."""
    url, schema = warehouse
    write_tables(url, schema, {"identifies": [row(0, user_id="u1", is_vip=True)]})
    victim = f"{schema}_state"  # the pg_schema fixture drops it afterwards
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{victim}"'))
        conn.execute(sa.text(f'CREATE TABLE "{victim}".t (a integer)'))
        conn.execute(sa.text(f'CREATE SEQUENCE "{victim}".s'))
    yield engine, schema, victim
    engine.dispose()


def _audience(tmp_path: Path, text: str) -> str:
    path = tmp_path / "attack.sql"
    path.write_text(text)
    return str(path)


def _victim_intact(engine: sa.Engine, victim: str) -> bool:
    with engine.connect() as conn:
        return sa.inspect(conn).has_table("t", schema=victim)


def _sequence_untouched(engine: sa.Engine, victim: str) -> bool:
    """The sequence still hands out 1 next (then it has moved: call once per test)."""
    with engine.begin() as conn:
        return conn.execute(sa.text(f"SELECT nextval('\"{victim}\".s')")).scalar() == 1


def test_the_commit_attack_of_issue_17_is_refused_and_drops_nothing(db, tmp_path) -> None:
    engine, schema, victim = db
    path = _audience(tmp_path, ATTACK.format(victim=victim))
    with pytest.raises(AudienceError, match=r"audience attack\.sql"):
        load_audience(engine, path, schema, START, END)
    assert _victim_intact(engine, victim)


@pytest.mark.parametrize(
    "query",
    [
        "SELECT nextval('{victim}.s')::text AS user_id",
        "SELECT user_id FROM {{schema}}.identifies WHERE setval('{victim}.s', 50) > 0",
        "SELECT user_id FROM {{schema}}.identifies WHERE {victim}.nextval('x') > 0",
    ],
)
def test_sequence_writes_are_refused_with_the_sequence_unchanged(db, tmp_path, query) -> None:
    engine, schema, victim = db
    path = _audience(tmp_path, query.format(victim=victim))
    with pytest.raises(AudienceError, match=r"nextval|setval"):
        load_audience(engine, path, schema, START, END)
    assert _sequence_untouched(engine, victim)


# Below the parser: the read-only run alone. Remove `SET TRANSACTION READ ONLY` (PostgreSQL)
# or `BEGIN TRANSACTION READ ONLY` (DuckDB) from READ_ONLY_RUNS and these fail.


def test_the_read_only_run_alone_refuses_nextval(db) -> None:
    engine, _, victim = db
    statement = sa.text(f"SELECT nextval('\"{victim}\".s')")
    with pytest.raises(AudienceError, match="read-only"):
        run_read_only(engine, statement, {}, where="raw.sql")
    assert _sequence_untouched(engine, victim)


def test_the_read_only_run_alone_refuses_a_write(db) -> None:
    engine, schema, _ = db
    statement = sa.text(f'DELETE FROM "{schema}".identifies RETURNING user_id')
    with pytest.raises(AudienceError, match="read-only"):
        run_read_only(engine, statement, {}, where="raw.sql")
    with engine.connect() as conn:
        count = conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".identifies')).scalar()
    assert count == 1


def test_the_read_only_run_alone_refuses_the_commit_attack(db) -> None:
    engine, _, victim = db
    wrapped = f"SELECT DISTINCT audience.user_id FROM ({ATTACK.format(victim=victim)}) AS audience"
    with pytest.raises(AudienceError, match="single statement"):
        run_read_only(engine, sa.text(wrapped), {}, where="raw.sql")
    assert _victim_intact(engine, victim)


def test_the_read_only_run_alone_refuses_a_side_effect_function(postgres_url, pg_schema) -> None:
    """A user-defined function the parser never sees: it writes, the transaction refuses."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{pg_schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{pg_schema}".log (a text)'))
        conn.execute(
            sa.text(
                f'CREATE FUNCTION "{pg_schema}".bump() RETURNS text LANGUAGE sql AS '
                f"$$ INSERT INTO \"{pg_schema}\".log VALUES ('x') RETURNING a $$"
            )
        )
    try:
        with pytest.raises(AudienceError, match="read-only"):
            run_read_only(engine, sa.text(f'SELECT "{pg_schema}".bump()'), {}, where="raw.sql")
        with engine.connect() as conn:
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{pg_schema}".log')).scalar() == 0
    finally:
        engine.dispose()


# Above the executor: the parser alone, without any database.


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql", "snowflake", "bigquery", "redshift"])
@pytest.mark.parametrize(
    ("query", "message"),
    [
        (ATTACK.format(victim="victim"), "not valid SQL|single statement"),
        ("SELECT nextval('s')::text AS user_id", "nextval"),
        ("SELECT user_id FROM {schema}.identifies WHERE setval('s', 5) > 0", "setval"),
        ("SELECT user_id FROM {schema}.identifies WHERE currval('s') > 0", "currval"),
        ("SELECT rolname AS user_id FROM pg_authid", "pg_authid"),
        ("SELECT rolname AS user_id FROM pg_catalog.pg_authid", "outside the source schema"),
        ("SELECT table_name AS user_id FROM information_schema.tables", "outside the source"),
        ("SELECT pg_read_file('/etc/passwd') AS user_id", "pg_read_file"),
        ("SELECT lo_import('/etc/passwd')::text AS user_id", "lo_import"),
        ("SELECT * FROM dblink('db', 'DROP TABLE t') AS t(user_id text)", "dblink"),
        ("SELECT column0 AS user_id FROM read_csv('/etc/passwd')", "read_csv"),
        ("SELECT file AS user_id FROM glob('/*')", "glob|not valid SQL"),
        ("SELECT user_id FROM other.identifies", "outside the source schema"),
        ("SELECT user_id INTO copy_of FROM {schema}.identifies", "INTO"),
        ("WITH d AS (DELETE FROM {schema}.identifies RETURNING user_id) SELECT * FROM d", "DEL"),
        ("SELECT user_id FROM {schema}.identifies FOR UPDATE", "LOCK"),
        ("COPY (SELECT 1) TO '/tmp/out.csv'", "must be a SELECT"),
        ("SELECT user_id FROM {schema}.identifies; COMMIT", "single statement"),
        ("SELECT user_id FROM {schema}.identifies WHERE pg_sleep(100) IS NULL", "pg_sleep"),
        ("SELECT {schema}.lower(user_id) AS user_id FROM {schema}.identifies", "qualified"),
        ("SELECT set_config('x', 'y', false) AS user_id", "set_config"),
        # a WITH name in one subquery does not cover a catalog table of the same name elsewhere
        (
            "WITH a AS (SELECT rolname AS user_id FROM pg_authid), pg_authid AS (SELECT 1) "
            "SELECT user_id FROM a",
            "pg_authid",
        ),
    ],
)
def test_the_parser_alone_refuses(query: str, message: str, dialect: str) -> None:
    with pytest.raises(AudienceError, match=message):
        prepare_audience(query, "bad.sql", dialect, "segment")


def test_a_finished_audience_leaves_no_timer_to_interrupt_the_next(tmp_path) -> None:
    """DuckDB: the timer that interrupts an audience at its timeout ends with it. Left
    running, the first audience's timer (0.3 s) would interrupt the next query on the same
    pooled connection: the second audience would fail inside its own 1.5 s."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "segment", {"identifies": [row(m, user_id=f"u{m}") for m in range(400)]})
    engine = sa.create_engine(url)
    quick = _audience(tmp_path, "SELECT user_id FROM {schema}.identifies WHERE user_id = 'u7'")
    assert load_audience(engine, quick, "segment", START, END, timeout_s=0.3) == {"u7"}
    slow = (
        "SELECT a.user_id FROM {schema}.identifies a, {schema}.identifies b, "
        "{schema}.identifies c, {schema}.identifies d WHERE a.id || b.id || c.id || d.id = 'x'"
    )
    with pytest.raises(AudienceError, match=r"ran longer than its 1\.5 s timeout"):
        load_audience(engine, _audience(tmp_path, slow), "segment", START, END, timeout_s=1.5)
    engine.dispose()


def test_a_missing_table_is_not_read_as_a_file_on_duckdb(tmp_path, monkeypatch) -> None:
    """DuckDB reads `segment."x.csv"` as the file segment.x.csv when no such table exists."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "segment", {"identifies": [row(0, user_id="u1")]})
    (tmp_path / "segment.x.csv").write_text("user_id\nsecret\n")
    monkeypatch.chdir(tmp_path)
    engine = sa.create_engine(url)
    path = _audience(tmp_path, 'SELECT user_id FROM {schema}."x.csv"')
    with pytest.raises(AudienceError, match="does not exist"):
        load_audience(engine, path, "segment", START, END)
    engine.dispose()


def test_a_slow_audience_stops_at_its_timeout(warehouse, tmp_path) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"identifies": [row(m, user_id=f"u{m}") for m in range(400)]})
    engine = sa.create_engine(url)
    slow = (
        "SELECT a.user_id FROM {schema}.identifies a, {schema}.identifies b, "
        "{schema}.identifies c, {schema}.identifies d WHERE a.id || b.id || c.id || d.id = 'x'"
    )
    with pytest.raises(AudienceError, match="timeout"):
        load_audience(engine, _audience(tmp_path, slow), schema, START, END, timeout_s=0.3)
    # The connection is usable afterwards (DuckDB's interrupt does not linger).
    quick = tmp_path / "quick.sql"
    quick.write_text("SELECT user_id FROM {schema}.identifies WHERE user_id = 'u7'")
    assert load_audience(engine, str(quick), schema, START, END) == {"u7"}
    engine.dispose()
