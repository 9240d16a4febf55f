"""Audience SQL is parsed, checked and written for each warehouse (issues 18.2, 18.14, 19)."""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

import pytest
import sqlglot
from connect_sync.warehouse.audience import AudienceError, audience_path
from connect_sync.warehouse.audience_sql import SQLGLOT_DIALECTS, prepare_audience

from connect_sync import sql

SHIPPED = ["recent_buyers", "vip_users"]


def _shipped(name: str) -> str:
    return files(sql).joinpath("audiences", f"{name}.sql").read_text(encoding="utf-8")


@pytest.mark.parametrize("dialect", sorted(SQLGLOT_DIALECTS))
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_audiences_pass_the_checks_and_are_written_for_every_dialect(
    name: str, dialect: str
) -> None:
    query = prepare_audience(_shipped(name), f"{name}.sql", dialect, "segment")

    target = SQLGLOT_DIALECTS[dialect]
    # What runs is valid SQL of the warehouse's dialect (bound values made literals here).
    runnable = query.sql.replace("\\:", ":").replace(":start", "NULL").replace(":end", "NULL")
    assert sqlglot.parse_one(runnable, read=target) is not None
    assert query.tables == (("order_completed",) if name == "recent_buyers" else ("identifies",))
    assert set(query.parameters) <= {"start", "end", "schema"}


@pytest.mark.parametrize(
    ("dialect", "column", "table"),
    [
        ("duckdb", '"timestamp"', '"segment"."identifies"'),
        ("postgresql", '"timestamp"', '"segment"."identifies"'),
        ("redshift", '"timestamp"', '"segment"."identifies"'),
        # Snowflake stores Segment's unquoted names upper case: "timestamp" would miss them.
        ("snowflake", '"TIMESTAMP"', '"SEGMENT"."IDENTIFIES"'),
        # BigQuery reads "timestamp" as a string literal: columns are in backticks.
        ("bigquery", "`timestamp`", "`segment`.`identifies`"),
    ],
)
def test_vip_users_names_the_timestamp_column_on_every_dialect(
    dialect: str, column: str, table: str
) -> None:
    written = prepare_audience(_shipped("vip_users"), "vip_users.sql", dialect, "segment").sql
    assert f"ORDER BY {column} DESC" in written
    assert f"FROM {table}" in written
    if dialect == "snowflake":
        assert '"timestamp"' not in written
    if dialect == "bigquery":
        assert '"' not in written


def test_a_mixed_case_schema_stays_quoted_as_written() -> None:
    written = prepare_audience(
        "SELECT user_id FROM {schema}.identifies", "a.sql", "snowflake", "Web Prod"
    ).sql
    assert 'FROM "Web Prod"."IDENTIFIES"' in written


def test_an_unknown_bind_parameter_names_it_and_the_supplied_ones() -> None:
    with pytest.raises(AudienceError) as raised:
        prepare_audience(
            "SELECT user_id FROM {schema}.identifies WHERE received_at >= :since",
            "since.sql",
            "duckdb",
            "segment",
        )
    message = str(raised.value)
    assert ":since" in message and ":start, :end, :schema" in message
    assert "\n" not in message


def test_colons_in_literals_are_not_bind_parameters() -> None:
    query = prepare_audience(
        "SELECT user_id FROM {schema}.identifies WHERE context_page_url <> 'https://x:80/:end'",
        "colon.sql",
        "postgresql",
        "segment",
    )
    assert query.parameters == ()


def test_an_unknown_audience_name_says_a_sql_path_works() -> None:
    with pytest.raises(AudienceError, match=r"no audience named 'nope'.*\.sql file"):
        audience_path("nope")


def test_an_unknown_audience_name_lists_the_shipped_ones() -> None:
    with pytest.raises(AudienceError, match=r"\(available: recent_buyers, vip_users;"):
        audience_path("nope")


def test_a_sql_file_name_without_a_folder_is_a_path(tmp_path, monkeypatch) -> None:
    """`mine.sql` is the file in the current folder, not a shipped audience `mine.sql`."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine.sql").write_text("SELECT user_id FROM {schema}.identifies")
    assert audience_path("mine.sql") == Path("mine.sql")
    with pytest.raises(AudienceError, match=r"audience file other\.sql not found"):
        audience_path("other.sql")


@pytest.mark.parametrize(
    "query",
    [
        "SELECT user_id FROM {schema}.identifies",
        "WITH recent AS (SELECT user_id, received_at FROM {schema}.tracks) "
        "SELECT DISTINCT user_id FROM recent WHERE received_at >= :start",
        "SELECT user_id FROM {schema}.identifies WHERE lower(email) LIKE '%@example.com' "
        "AND date_trunc('day', received_at) < :end GROUP BY user_id HAVING count(*) > 1",
        "SELECT user_id FROM {schema}.identifies UNION SELECT user_id FROM {schema}.tracks",
        "SELECT * FROM {schema}.identifies",
    ],
)
def test_ordinary_audiences_are_accepted(query: str) -> None:
    for dialect in SQLGLOT_DIALECTS:
        prepare_audience(query, "ok.sql", dialect, "segment")


def test_an_audience_must_name_a_user_id_column() -> None:
    with pytest.raises(AudienceError, match="user_id column"):
        prepare_audience("SELECT anonymous_id FROM {schema}.identifies", "a.sql", "duckdb", "s")


def test_an_unsupported_warehouse_is_named() -> None:
    with pytest.raises(AudienceError, match="cannot run on mssql"):
        prepare_audience("SELECT user_id FROM {schema}.identifies", "a.sql", "mssql", "s")
