"""Bounded memory at any warehouse size (issue #16): the warehouse is opened read-only when
the state lives elsewhere, and the users stream reads its rows bucket by bucket."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine

from connect_sync.settings import Settings
from tests.segment_rows import row, sandbox_settings, write_tables


def _tables() -> dict[str, list[dict]]:
    return {
        "identifies": [
            row(0, anonymous_id="a1", email="ann@example.com"),
            row(1, anonymous_id="a1", user_id="u1", first_name="Ann"),
            row(2, user_id="u2", email="bob@example.com"),
        ],
        "tracks": [row(3, user_id="u1", event="Signed Up", event_text="Signed Up")],
        "aliases": [],
    }


@pytest.fixture
def held_read_only(tmp_path: Path):
    """A DuckDB warehouse file, held open read-only by another process (a BI tool, dbt,
    another partition) for as long as the test runs."""
    path = tmp_path / "warehouse.duckdb"
    write_tables(f"duckdb:///{path}", "segment", _tables())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, duckdb
                con = duckdb.connect({str(path)!r}, read_only=True)
                con.execute("SELECT count(*) FROM segment.identifies").fetchall()
                print("holding", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield path
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_sync_reads_a_duckdb_file_another_process_holds_read_only(
    held_read_only: Path, tmp_path: Path, sandbox
) -> None:
    url = f"duckdb:///{held_read_only}"
    state = f"duckdb:///{tmp_path / 'state.duckdb'}"
    out = tmp_path / "out.jsonl"
    dry = run_sync(
        Settings(warehouse_url=url, state_url=state, journal_dir=tmp_path / "j1"),
        SyncOptions(dry_run=True, output=out),
    )
    assert dry.status == "succeeded", dry.error
    assert dry.users_sent == 2 and len(out.read_text().splitlines()) >= 3
    settings = sandbox_settings(url, "segment", sandbox, state_url=state, journal_dir=tmp_path)
    real = run_sync(settings, SyncOptions())
    assert real.status == "succeeded", real.error
    assert (real.users_sent, real.events_sent) == (2, 1)


def test_a_read_only_warehouse_engine_cannot_write(warehouse: tuple[str, str]) -> None:
    url, schema = warehouse
    write_tables(url, schema, _tables())
    engine = create_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".identifies')).scalar()
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(f'CREATE TABLE "{schema}".written (x INTEGER)'))
    finally:
        engine.dispose()

