"""#17.11: one line and exit 2, never a traceback: a journal that cannot be written (disk
full; no `.tmp` left behind), a DuckDB state file held by another process, a URL with a
non-numeric port."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.journal import AckJournal, JournalError
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables


def run_cli(*args: str, env: dict[str, str], cwd: Path, fsize: int | None = None):
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}

    def limit() -> None:  # a "full disk": no file of this process may grow past fsize
        if fsize is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))

    return subprocess.run(
        [sys.executable, "-m", "connect_sync", *args],
        env={**full, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit,
    )


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, (done.returncode, done.stderr[-2000:])
    assert "Traceback" not in done.stderr
    logged = (" WARNING ", " ERROR ", " INFO ")  # log records of the run are not the error
    lines = [x for x in done.stderr.strip().splitlines() if not any(m in x for m in logged)]
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def test_non_numeric_port(tmp_path: Path) -> None:
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": "postgresql://bob:hunter2@db.example:5x432/segment",
        "CONNECT_API_KEY": "k",
    }
    for command in (["sync"], ["status"], ["rejects", "list"]):
        line = one_line(run_cli(*command, env=env, cwd=tmp_path))
        assert "CONNECT_SYNC_WAREHOUSE_URL" in line and "hunter2" not in line


def test_duckdb_state_held_by_another_process(duckdb_url: str, tmp_path: Path, sandbox) -> None:
    write_tables(duckdb_url, "segment", {"tracks": [row(0, user_id="u1", event="A")]})
    holder = duckdb.connect(duckdb_url.removeprefix("duckdb:///"))  # this process holds it
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": duckdb_url,
        "CONNECT_API_URL": sandbox.api_url,  # Connect answers: the state store is the problem
        "CONNECT_API_KEY": sandbox.api_key,
    }
    try:
        for command in (["sync"], ["status"]):
            line = one_line(run_cli(*command, env=env, cwd=tmp_path))
            assert "in use by another process" in line or "lock" in line
    finally:
        holder.close()


def test_journal_append_on_a_full_disk(tmp_path: Path, duckdb_url: str) -> None:
    store = StateStore(create_engine(duckdb_url, create_dirs=True), "s", "segment")
    store.migrate()
    journal = AckJournal(tmp_path / "journal", store)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (64, hard))
    try:
        with pytest.raises(JournalError, match="cannot write the acknowledgement journal"):
            journal.delivered("event", [f"m-{i}" for i in range(100)], "run-1")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert not list((tmp_path / "journal").glob(".*.tmp"))
    store.engine.dispose()


def test_cli_run_with_a_full_disk(
    postgres_url: str, pg_schema: str, sandbox, tmp_path: Path
) -> None:
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": postgres_url,
        "CONNECT_SYNC_SOURCE_SCHEMA": pg_schema,
        "CONNECT_SYNC_STATE_SCHEMA": f"{pg_schema}_state",
        "CONNECT_SYNC_JOURNAL_DIR": str(tmp_path / "journal"),
        "CONNECT_API_URL": sandbox.api_url,
        "CONNECT_API_KEY": sandbox.api_key,
    }
    write_tables(postgres_url, pg_schema, {"tracks": [row(0, user_id="u1", event="A")]})
    settings = Settings(
        warehouse_url=postgres_url,
        source_schema=pg_schema,
        state_schema=f"{pg_schema}_state",
        journal_dir=tmp_path / "journal",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
    )
    assert run_sync(settings, SyncOptions()).status == "succeeded"  # the identity cache
    write_tables(postgres_url, pg_schema, {"tracks": [row(5, user_id="u1", event="B")]})
    line = one_line(run_cli("sync", env=env, cwd=tmp_path, fsize=16))
    assert "cannot write" in line
    assert not list((tmp_path / "journal").rglob(".*.tmp"))
    store = StateStore(create_engine(postgres_url), f"{pg_schema}_state", settings.books_key)
    assert store.recent_runs()[0]["status"] == "failed"
    store.engine.dispose()
