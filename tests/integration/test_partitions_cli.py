"""`connect-sync sync --partitions 2` from the command line, under the temporary Prefect
server it starts itself (in its own file: test_partitions.py's runs are long, and the
suite's workers take a file each)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.integration.test_partitions import load_demo


@pytest.mark.slow
@pytest.mark.postgres
def test_cli_partitioned_run_under_a_temporary_prefect_server(
    postgres_url: str, pg_schema: str, sandbox, tmp_path: Path
) -> None:
    load_demo(postgres_url, pg_schema, users=150, seed=3)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_"))}
    env.update(
        CONNECT_SYNC_WAREHOUSE_URL=postgres_url,
        CONNECT_SYNC_SOURCE_SCHEMA=pg_schema,
        CONNECT_SYNC_STATE_SCHEMA=f"{pg_schema}_state",
        CONNECT_SYNC_JOURNAL_DIR=str(tmp_path / "journal"),
        CONNECT_API_URL=sandbox.api_url,
        CONNECT_API_KEY=sandbox.api_key,
        PREFECT_HOME=str(tmp_path / "prefect"),
    )
    command = [sys.executable, "-m", "connect_sync", "sync", "--partitions", "2"]
    done = subprocess.run(
        command, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=240
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # as quiet as an unpartitioned run: no Prefect or Dask INFO lines, no telemetry error
    noise = [line for line in done.stderr.splitlines() if line.strip()]
    assert not noise, done.stderr[-3000:]
    assert done.stdout.startswith("run ") and "succeeded" in done.stdout.splitlines()[0]
    stats = sandbox.stats()
    assert stats["events"] > 0 and stats["duplicate_events"] == 0
    # the coordinating flow moved both cursors once both partitions had settled them
    engine = sa.create_engine(postgres_url)
    key = Settings(source_schema=pg_schema, api_url=sandbox.api_url, api_key=sandbox.api_key)
    store = StateStore(engine, f"{pg_schema}_state", key.books_key)  # this destination's books
    assert {"identifies", "tracks"} <= set(store.cursors())
    runs = store.recent_runs()
    engine.dispose()
    assert [r["status"] for r in runs] == ["succeeded"]
    stored = orjson.loads(runs[0]["report"])
    tracks = ("events_sent", "pages_sent", "screens_sent")
    assert sum(stored.get(k, 0) for k in tracks) == stats["track_items"]
