"""The state store writes in every supported warehouse, or is refused before anything is
sent; a dialect's own errors reach the user as one line with exit 2."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.demo import build_demo_warehouse
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.state import StateStore, state_metadata
from connect_sync.warehouse.upsert import UPSERT_STYLES, upsert

from tests.integration.dialects.requirements import require


def _cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "connect_sync", "sync", *args],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=cwd,
        env={**os.environ, **env},
    )


def _one_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_a_state_database_without_an_upsert_style_is_refused(tmp_path) -> None:
    store = StateStore(sa.create_engine(f"sqlite:///{tmp_path / 's.db'}"), "main", "segment")
    with pytest.raises(WarehouseError, match="cannot be kept in a 'sqlite' database"):
        store.migrate()


def test_a_state_location_it_cannot_write_exits_2_before_anything_is_sent(
    tmp_path, sandbox
) -> None:
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, users=20, seed=1)
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{warehouse}",
        "CONNECT_SYNC_STATE_URL": f"sqlite:///{tmp_path / 'state.db'}",
        "CONNECT_API_URL": sandbox.api_url,
        "CONNECT_API_KEY": sandbox.api_key,
    }
    line = _one_line(_cli(env, tmp_path))
    assert "state store" in line and "sqlite" in line
    assert sandbox.stats()["requests"] == 0


@pytest.mark.parametrize(
    ("url", "extra", "module", "expected"),
    [
        (
            "snowflake://u:secret@acct/db/segment?protocol=http",
            "snowflake",
            "snowflake.sqlalchemy",
            "'protocol' cannot be set via the URL",
        ),
        ("bigquery://", "bigquery", "sqlalchemy_bigquery", "credentials"),
    ],
)
def test_a_dialect_refusing_its_url_is_one_line_with_exit_2(
    url, extra, module, expected, tmp_path
) -> None:
    require(module, extra)
    line = _one_line(_cli({"CONNECT_SYNC_WAREHOUSE_URL": url}, tmp_path, "--dry-run"))
    assert expected in line
    assert "secret" not in line


def _merge_statements(dialect_url: str, update: list[str] | None) -> list[str]:
    """The statements `upsert` sends through a dialect (compiled, not run)."""
    statements: list[str] = []

    def executor(clause, *multiparams, **params) -> None:
        statements.append(str(clause.compile(dialect=engine.dialect)))

    engine = sa.create_mock_engine(dialect_url, executor)
    table = state_metadata("connect_sync").tables["connect_sync.cursors"]
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {
            "source_schema": "s",
            "stream": f"t{i}",
            "position": now,
            "run_id": None,
            "updated_at": now,
        }
        for i in range(3)
    ]
    upsert(engine, table, rows, ["source_schema", "stream"], update)
    return statements


@pytest.mark.parametrize(
    ("url", "extra", "module"),
    [
        ("snowflake://", "snowflake", "snowflake.sqlalchemy"),
        ("bigquery://", "bigquery", "sqlalchemy_bigquery"),
    ],
)
@pytest.mark.parametrize("update", [None, ["position", "run_id", "updated_at"]])
def test_merge_dialects_upsert_with_one_merge_of_typed_rows(url, extra, module, update) -> None:
    require(module, extra)
    (statement,) = _merge_statements(url, update)
    assert statement.strip().startswith("MERGE INTO")
    assert "ON CONFLICT" not in statement
    assert statement.count("UNION ALL") == 2
    assert ("WHEN MATCHED THEN UPDATE" in statement) == bool(update)
    assert "WHEN NOT MATCHED THEN INSERT" in statement


def test_every_state_dialect_has_one_declared_style() -> None:
    assert set(UPSERT_STYLES) == {"duckdb", "postgresql", "snowflake", "bigquery", "redshift"}
    assert UPSERT_STYLES["redshift"] != "on_conflict"  # Redshift has no ON CONFLICT
