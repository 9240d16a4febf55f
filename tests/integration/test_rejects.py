"""`rejects list|replay`: what Connect never answered is recorded as retryable and sent
again exactly once; what a later sync delivered meanwhile is skipped."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.flows.replay import replay_rejections
from connect_sync.flows.streams import BOOKS
from connect_sync.warehouse.demo import build_demo_warehouse
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.run_lock import RunInProgress, RunLock
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings


def settings_for(path: Path, api_url: str, key: str, **extra) -> Settings:
    return Settings(warehouse_url=f"duckdb:///{path}", api_url=api_url, api_key=key, **extra)


def store_for(path: Path, sandbox) -> StateStore:
    """The books of the demo schema delivered to the sandbox (books are per destination)."""
    key = settings_for(path, sandbox.api_url, sandbox.api_key).books_key
    return StateStore(create_engine(f"duckdb:///{path}"), "connect_sync", key)


def unreachable(sandbox) -> None:
    """The sandbox closes every connection without an answer (Connect unreachable)."""
    sandbox.set_faults(drop_rate=1.0, seed=1)


@pytest.fixture
def failed_run(tmp_path: Path, sandbox) -> Path:
    """A demo warehouse whose first sync found Connect unreachable."""
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=120, seed=2)
    down = settings_for(path, sandbox.api_url, sandbox.api_key, max_retries=1, concurrency=16)
    unreachable(sandbox)
    try:
        report = run_sync(down, SyncOptions())
    finally:
        sandbox.set_faults(drop_rate=0.0)
    assert report.status == "failed" and report.undelivered > 0
    assert report.events_sent == report.users_sent == 0
    assert sandbox.stats()["users"] == sandbox.stats()["events"] == 0
    store = store_for(path, sandbox)
    assert not store.cursors()  # no cursor moved past undelivered rows
    store.engine.dispose()
    return path


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    return subprocess.run(
        [sys.executable, "-m", "connect_sync", *args],
        cwd=cwd,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_replay_sends_the_unanswered_items_once(failed_run: Path, sandbox, tmp_path) -> None:
    store = store_for(failed_run, sandbox)
    pending = store.rejections(retryable_only=True, pending_only=True)
    tracks = pending[pending["stream"].isin(["events", "pages", "screens"])]  # every track
    assert len(tracks) > 200 and tracks["reason"].str.contains("Server disconnected").all()
    assert {"users", "groups", "events", "pages", "screens"} <= set(pending["stream"])
    store.engine.dispose()  # the CLI below opens the DuckDB file in another process
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{failed_run}",
        "CONNECT_API_URL": sandbox.api_url,
        "CONNECT_API_KEY": sandbox.api_key,
        "COLUMNS": "200",  # the reasons unwrapped
    }

    listed = run_cli("rejects", "list", "--retryable", "--limit", "5", cwd=tmp_path, env=env)
    replayed = run_cli("rejects", "replay", cwd=tmp_path, env=env)

    assert listed.returncode == 0 and "RemoteProtocolError" in listed.stdout, listed.stderr
    assert replayed.returncode == 0, replayed.stdout + replayed.stderr
    assert f"{len(pending)} pending, {len(pending)} sent" in replayed.stdout
    remote = sandbox.stats()
    assert remote["events"] == len(tracks) and remote["duplicate_events"] == 0
    assert store.rejections(retryable_only=True, pending_only=True).empty
    for stream, book in BOOKS.items():
        ids = tracks.loc[tracks["stream"] == stream, "message_id"]
        assert store.delivered_among(book, ids) == set(ids)

    again = replay_rejections(settings_for(failed_run, sandbox.api_url, sandbox.api_key))
    assert again.pending == again.sent == 0
    assert sandbox.stats()["requests"] == remote["requests"]
    # the books know: the next sync sends no event twice
    report = run_sync(settings_for(failed_run, sandbox.api_url, sandbox.api_key))
    assert report.status == "succeeded"
    already = sum(report.stream(s).unchanged for s in BOOKS if s != "aliases")
    assert already >= len(tracks)
    assert sandbox.stats()["duplicate_events"] == 0


def test_replay_skips_what_a_later_sync_delivered(failed_run: Path, sandbox) -> None:
    settings = settings_for(failed_run, sandbox.api_url, sandbox.api_key)
    pending = store_for(failed_run, sandbox).rejections(retryable_only=True, pending_only=True)
    assert run_sync(settings, SyncOptions()).status == "succeeded"  # delivers everything
    before = sandbox.stats()

    report = replay_rejections(settings)

    assert report.status == "succeeded"
    assert report.pending == len(pending) and report.sent == 0
    assert report.already_delivered == len(pending)
    assert sandbox.stats() == before  # nothing sent
    assert store_for(failed_run, sandbox).rejections(retryable_only=True, pending_only=True).empty


def test_replay_still_unreachable_leaves_them_pending(failed_run: Path, sandbox) -> None:
    settings = settings_for(failed_run, sandbox.api_url, sandbox.api_key, max_retries=0)
    pending = store_for(failed_run, sandbox).rejections(retryable_only=True, pending_only=True)

    unreachable(sandbox)
    report = replay_rejections(settings)

    assert report.status == "failed" and report.sent == 0
    assert report.failed == report.pending == len(pending)
    store = store_for(failed_run, sandbox)
    assert len(store.rejections(retryable_only=True, pending_only=True)) == len(pending)


def test_a_replay_beside_a_running_sync_is_refused_and_sends_nothing(
    failed_run: Path, sandbox
) -> None:
    """A replay writes delivery state as a sync does: beside a running sync (or replay) it
    is refused with the holder's line, sends nothing and leaves the rejections pending;
    once the lock is free it runs."""
    settings = settings_for(failed_run, sandbox.api_url, sandbox.api_key)
    pending = store_for(failed_run, sandbox).rejections(retryable_only=True, pending_only=True)
    assert len(pending)
    engine = create_engine(f"duckdb:///{failed_run}")
    holder = RunLock(engine, settings.state_schema, settings.source_schema)
    assert holder.try_acquire()
    holder.note("run abc123 started 2026-12-02 10:00:00 UTC on box pid 4242")
    before = sandbox.stats()
    try:
        with pytest.raises(RunInProgress, match="abc123"):
            replay_rejections(settings)
    finally:
        holder.release()
        engine.dispose()
    assert sandbox.stats() == before  # nothing sent
    store = store_for(failed_run, sandbox)
    assert len(store.rejections(retryable_only=True, pending_only=True)) == len(pending)
    store.engine.dispose()
    assert replay_rejections(settings).sent == len(pending)
