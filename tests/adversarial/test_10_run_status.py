"""#17.10: a killed run does not stay `running`; a failed run under Prefect is Failed; the
same bad rows are not recorded as new rejections by every run of the lookback window."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables


def _settings(url: str, schema: str, api_url: str, key: str, tmp_path: Path, **extra) -> Settings:
    return Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=f"{schema}_state",
        api_url=api_url,
        api_key=key,
        journal_dir=tmp_path / "journal",
        **extra,
    )


def _tracks() -> list[dict]:
    return [
        row(0, id="good-1", user_id="u1", event="Clicked", event_text="Clicked"),
        row(1, id="no-user-1", event="Clicked", event_text="Clicked"),
        row(2, id="long-name-1", user_id="u2", event="x" * 201, event_text="x" * 201),
    ]


def test_killed_run_is_marked_failed_by_the_next(warehouse, sandbox, tmp_path: Path) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"tracks": _tracks()})
    settings = _settings(url, schema, sandbox.api_url, sandbox.api_key, tmp_path)
    # a run that dies after its set-up (its lock and `running` row taken), like a SIGKILL
    script = textwrap.dedent(
        f"""
        import os
        from pathlib import Path
        from connect_sync.flows.job import SyncJob
        from connect_sync.settings import Settings
        settings = Settings(
            warehouse_url={url!r}, source_schema={schema!r}, state_schema={schema + "_state"!r},
            api_url={sandbox.api_url!r}, api_key={sandbox.api_key!r},
            journal_dir=Path({str(tmp_path / "journal")!r}),
        )
        job = SyncJob(settings)
        job.prepare()
        print(job.report.run_id, flush=True)
        os._exit(9)
        """
    )
    died = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert died.returncode == 9, died.stderr
    dead_id = died.stdout.strip()
    store = StateStore(create_engine(url), settings.state_schema, settings.books_key)
    assert {r["run_id"]: r["status"] for r in store.recent_runs()}[dead_id] == "running"
    store.engine.dispose()
    report = run_sync(settings, SyncOptions())
    assert report.status == "succeeded"
    statuses = {r["run_id"]: r["status"] for r in store.recent_runs()}
    assert statuses == {dead_id: "failed", report.run_id: "succeeded"}
    store.engine.dispose()


def test_rejections_are_recorded_once_across_runs(warehouse, sandbox, tmp_path: Path) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"tracks": _tracks()})
    settings = _settings(url, schema, sandbox.api_url, sandbox.api_key, tmp_path)
    first = run_sync(settings, SyncOptions())
    second = run_sync(settings, SyncOptions())  # the same rows, inside the lookback window
    assert first.events_rejected == second.events_rejected == 2  # each run still reports them
    store = StateStore(create_engine(url), settings.state_schema, settings.books_key)
    rejections = store.rejections()
    assert sorted(rejections["message_id"]) == ["long-name-1", "no-user-1"]
    assert set(rejections["run_id"]) == {first.run_id}
    store.engine.dispose()


@pytest.fixture
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_failed_run_is_failed_in_prefect(
    prefect_harness, duckdb_url: str, tmp_path: Path, sandbox
) -> None:
    from connect_sync.flows.sync import run_job_flow
    from prefect.client.orchestration import get_client

    write_tables(duckdb_url, "segment", {"tracks": _tracks()})
    # Connect answers (the preflight passes) but every delivery fails: exit 1, not 2
    httpx.post(f"{sandbox.url}/_sandbox/faults", json={"error_rate": 1.0}, timeout=10)
    settings = _settings(
        duckdb_url, "segment", sandbox.api_url, sandbox.api_key, tmp_path, max_retries=0
    )
    report = run_job_flow(settings, SyncOptions())
    assert report.status == "failed"  # the caller still gets the report
    with get_client(sync_client=True) as client:
        runs = [r for r in client.read_flow_runs() if r.name.startswith("sync-")]
    assert runs and all(r.state is not None and r.state.is_failed() for r in runs)
