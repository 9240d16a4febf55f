"""#17.2: one run per state store and source schema at a time. A second run exits 2 with a
line naming the running one; a run whose process died is found and marked failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.run_lock import RunInProgress, RunLock
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables


def _settings(url: str, schema: str, sandbox, tmp_path: Path) -> Settings:
    return Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=f"{schema}_state",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
        journal_dir=tmp_path / "journal",
    )


def _seed(url: str, schema: str) -> None:
    tracks = [row(i, user_id=f"u{i}", event="Clicked", event_text="Clicked") for i in range(5)]
    write_tables(url, schema, {"tracks": tracks})


def test_second_run_refused_while_one_runs_and_dead_run_marked_failed(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    _seed(url, schema)
    settings = _settings(url, schema, sandbox, tmp_path)
    store = StateStore(create_engine(url), settings.state_schema, settings.books_key)
    store.migrate()
    running_id = store.start_run("sync")  # the run that holds the lock, as another would
    holder = RunLock(store.engine, settings.state_schema, schema)
    assert holder.try_acquire()
    holder.note(f"run {running_id} started now on here pid 1")
    store.engine.dispose()
    try:
        with pytest.raises(RunInProgress, match=running_id):
            run_sync(settings, SyncOptions())
        assert sandbox.stats()["events"] == 0  # the second run sent nothing
    finally:
        holder.release()
    # the holder is gone (its process died without finishing): the next run takes over
    report = run_sync(settings, SyncOptions())
    assert report.status == "succeeded" and report.events_sent == 5
    runs = {r["run_id"]: r for r in store.recent_runs()}
    assert runs[running_id]["status"] == "failed"
    assert "died" in runs[running_id]["report"]
    assert runs[report.run_id]["status"] == "succeeded"
    store.engine.dispose()


def test_lock_is_per_source_schema_and_released_after_a_run(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    _seed(url, schema)
    settings = _settings(url, schema, sandbox, tmp_path)
    assert run_sync(settings, SyncOptions()).status == "succeeded"
    engine = create_engine(url)
    mine = RunLock(engine, settings.state_schema, schema)
    other = RunLock(engine, settings.state_schema, schema + "_other")
    try:
        assert mine.try_acquire()  # the finished run gave it back
        assert other.try_acquire()  # another source schema has its own
        again = RunLock(engine, settings.state_schema, schema)
        assert not again.try_acquire()
    finally:
        mine.release()
        other.release()
        engine.dispose()


def test_cli_second_run_exits_2_with_one_line(duckdb_url: str, sandbox, tmp_path: Path) -> None:
    _seed(duckdb_url, "segment")
    engine = create_engine(duckdb_url)
    holder = RunLock(engine, "connect_sync", "segment")
    assert holder.try_acquire()
    holder.note("run abc123 started 2026-12-02 10:00:00 UTC on box pid 4242")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    env.update(
        CONNECT_SYNC_WAREHOUSE_URL=duckdb_url,
        CONNECT_API_URL=sandbox.api_url,
        CONNECT_API_KEY=sandbox.api_key,
    )
    try:
        done = subprocess.run(
            [sys.executable, "-m", "connect_sync", "sync"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        holder.release()
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert "abc123" in lines[0] and "pid 4242" in lines[0]
