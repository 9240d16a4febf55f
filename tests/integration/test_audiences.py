"""Audiences run on real DuckDB and PostgreSQL: the shipped examples select the right users,
and the SQL that runs is the SQL that was checked (issues 18.2, 19)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.audience import AudienceError, load_audience, run_read_only

from tests.segment_rows import at, row, write_tables


@pytest.fixture
def engine(warehouse):
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, user_id="vip1", is_vip=True),
                row(0, user_id="was_vip", is_vip=True),
                row(5, user_id="was_vip", is_vip=False),
                row(0, user_id="now_vip", is_vip=False),
                row(5, user_id="now_vip", is_vip=True),
                row(6, user_id="now_vip"),  # null: not sent in this call
                row(0, user_id="plain", is_vip=False),
                row(0, anonymous_id="anon", is_vip=True),
            ],
            "order_completed": [
                row(10, user_id="buyer1", event="order_completed"),
                row(59, user_id="buyer2", event="order_completed"),
                row(60, user_id="too_late", event="order_completed"),
                row(-1, user_id="too_early", event="order_completed"),
                row(20, anonymous_id="anon", event="order_completed"),
            ],
        },
    )
    engine = sa.create_engine(url)
    yield engine, schema
    engine.dispose()


def test_vip_users_selects_users_whose_latest_identify_says_vip(engine) -> None:
    engine, schema = engine
    assert load_audience(engine, "vip_users", schema, at(0), at(60)) == {"vip1", "now_vip"}


def test_recent_buyers_selects_the_window_s_buyers(engine) -> None:
    engine, schema = engine
    assert load_audience(engine, "recent_buyers", schema, at(0), at(60)) == {"buyer1", "buyer2"}


def test_colons_and_casts_in_the_sql_are_not_bind_parameters(engine, tmp_path: Path) -> None:
    engine, schema = engine
    path = tmp_path / "colons.sql"
    path.write_text(
        "SELECT user_id FROM {schema}.identifies\n"
        "WHERE 'https://x:80/:end' LIKE '%:80/%' AND user_id::text = 'vip1' AND :schema <> ''"
    )
    assert load_audience(engine, str(path), schema, at(0), at(60)) == {"vip1"}


def test_an_unknown_bind_parameter_is_one_clear_line(engine, tmp_path: Path) -> None:
    engine, schema = engine
    path = tmp_path / "since.sql"
    path.write_text("SELECT user_id FROM {schema}.identifies WHERE received_at >= :since")
    with pytest.raises(AudienceError) as raised:
        load_audience(engine, str(path), schema, at(0), at(60))
    assert str(raised.value) == (
        "audience since.sql uses the parameter :since, which the job does not supply "
        "(it supplies :start, :end, :schema)"
    )


def test_a_database_error_is_the_database_s_own_line(engine, tmp_path: Path) -> None:
    """The database's message, not the driver's exception class in front of it."""
    engine, schema = engine
    path = tmp_path / "typo.sql"
    path.write_text("SELECT user_id FROM {schema}.identifies WHERE no_such_column = 1")
    with pytest.raises(AudienceError) as raised:
        load_audience(engine, str(path), schema, at(0), at(60))
    expected = {
        "postgresql": 'audience typo.sql failed: column "no_such_column" does not exist',
        "duckdb": "audience typo.sql failed: Binder Error: Referenced column "
        '"no_such_column" not found in FROM clause!',
    }[engine.dialect.name]
    assert str(raised.value) == expected


def test_an_unreachable_warehouse_is_the_driver_s_own_line(tmp_path: Path) -> None:
    """Nothing listens on port 1: the table check's connection error, on one line."""
    engine = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/test")
    path = tmp_path / "q.sql"
    path.write_text("SELECT user_id FROM {schema}.identifies")
    with pytest.raises(AudienceError) as raised:
        load_audience(engine, str(path), "segment", at(0), at(60))
    message = str(raised.value)
    assert message.startswith("audience q.sql failed: cannot reach the warehouse postgresql")
    assert ": connection failed: " in message
    assert "\n" not in message


def test_postgresql_bounds_the_audience_by_its_timeout(postgres_url: str) -> None:
    """The audience's timeout reaches PostgreSQL as the transaction's statement_timeout,
    in milliseconds."""
    engine = sa.create_engine(postgres_url)
    statement = sa.text("SELECT current_setting('statement_timeout')")
    try:
        assert run_read_only(engine, statement, {}, where="t.sql", timeout_s=2.5) == ["2500ms"]
        assert run_read_only(engine, statement, {}, where="t.sql", timeout_s=120) == ["2min"]
    finally:
        engine.dispose()
