"""#21: a failed or missing partition leaves every cursor where it was and fails the run;
a row that cannot be sent is recorded with its reason, shown by `rejects list`."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from connect_sync.flows.books import Books, PartitionResult
from connect_sync.flows.pipeline import SyncOptions, merge_reports, run_sync
from connect_sync.flows.report import RunReport
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables

T = datetime(2026, 11, 1, tzinfo=UTC)
TABLES = {"users": "identifies", "events": "tracks"}


@pytest.fixture
def store(postgres_url: str, pg_schema: str):
    state = StateStore(create_engine(postgres_url), f"{pg_schema}_state", pg_schema)
    state.migrate()
    state.move_cursor("identifies", T, "earlier")
    state.move_cursor("tracks", T, "earlier")
    yield state
    state.engine.dispose()


def _books(store: StateStore, *, dry_run: bool = False, moves_cursors: bool = True) -> Books:
    report = RunReport(source_schema=store.source_schema, kind="sync", dry_run=dry_run)
    report.run_id = store.start_run("sync")
    return Books(store, report, dry_run=dry_run, moves_cursors=moves_cursors)


def _result(partition: int, settled: dict[str, datetime | None]) -> PartitionResult:
    return PartitionResult(partition, {"streams": {}, "streams_failed": []}, settled)


def _later(hours: int) -> datetime:
    return T + timedelta(hours=hours)


def test_every_partition_settled_moves_cursors(store: StateStore) -> None:
    books = _books(store)
    results = [_result(p, {"users": _later(p + 1), "events": _later(p + 2)}) for p in range(3)]
    books.settle_partitions(TABLES, 3, results, merge_reports)
    assert store.cursors() == {"identifies": _later(3), "tracks": _later(4)}
    assert not books.report.streams_failed


def test_a_missing_partition_moves_no_cursor(store: StateStore) -> None:
    books = _books(store)
    results = [_result(p, {"users": _later(5), "events": _later(5)}) for p in (0, 2)]
    books.settle_partitions(TABLES, 3, results, merge_reports)  # partition 1 never reported
    assert store.cursors() == {"identifies": T, "tracks": T}
    assert sorted(books.report.streams_failed) == ["events", "users"]


def test_a_failed_partition_moves_no_cursor(store: StateStore) -> None:
    books = _books(store)
    results = [
        _result(0, {"users": _later(5), "events": _later(5)}),
        _result(1, {"users": _later(5)}),  # its events raised
        _result(2, {"users": _later(6), "events": _later(6)}),
    ]
    books.settle_partitions(TABLES, 3, results, merge_reports)
    assert store.cursors() == {"identifies": _later(6), "tracks": T}
    assert books.report.streams_failed == ["events"]


def test_the_run_report_adds_up_the_partitions_reports(store: StateStore) -> None:
    books = _books(store)
    results = [
        PartitionResult(
            p,
            {"requests": p + 1, "streams": {}, "streams_failed": ["groups"] if p == 1 else []},
            {"users": _later(1), "events": _later(1)},
        )
        for p in range(3)
    ]
    books.settle_partitions(TABLES, 3, results, merge_reports)
    assert books.report.requests == 6
    assert books.report.streams_failed == ["groups"]


@pytest.mark.parametrize(("dry_run", "moves_cursors"), [(True, True), (False, False)])
def test_a_dry_run_or_a_run_that_moves_no_cursor_settles_none(
    store: StateStore, dry_run: bool, moves_cursors: bool
) -> None:
    books = _books(store, dry_run=dry_run, moves_cursors=moves_cursors)
    results = [_result(p, {"users": _later(p + 1), "events": _later(p + 2)}) for p in range(3)]
    books.settle_partitions(TABLES, 3, results, merge_reports)
    assert store.cursors() == {"identifies": T, "tracks": T}
    assert not books.report.streams_failed


def test_partitions_that_read_no_rows_move_no_cursor(store: StateStore) -> None:
    books = _books(store)
    results = [_result(p, {"users": None, "events": None}) for p in range(3)]
    books.settle_partitions(TABLES, 3, results, merge_reports)
    assert store.cursors() == {"identifies": T, "tracks": T}
    assert not books.report.streams_failed


def test_rejected_rows_are_listed_with_message_id_reason_and_run(
    duckdb_url: str, sandbox, tmp_path: Path
) -> None:
    write_tables(
        duckdb_url,
        "segment",
        {
            "tracks": [
                row(0, id="ok-1", user_id="u1", event="Clicked", event_text="Clicked"),
                row(1, id="nouser-1", event="Clicked", event_text="Clicked"),
                row(2, id="longname-1", user_id="u2", event="n" * 201, event_text="n" * 201),
            ]
        },
    )
    settings = Settings(warehouse_url=duckdb_url, api_url=sandbox.api_url, api_key=sandbox.api_key)
    report = run_sync(settings, SyncOptions())
    assert report.status == "succeeded" and report.events_rejected == 2
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    env.update(  # the books of the destination the run delivered to
        CONNECT_SYNC_WAREHOUSE_URL=duckdb_url,
        CONNECT_API_URL=sandbox.api_url,
        CONNECT_API_KEY=sandbox.api_key,
        COLUMNS="250",
    )
    listed = subprocess.run(
        [sys.executable, "-m", "connect_sync", "rejects", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert listed.returncode == 0, listed.stderr
    lines = {line.split("│")[2].strip(): line for line in listed.stdout.splitlines() if "│" in line}
    assert "missing_user_id" in lines["nouser-1"] and report.run_id[:8] in lines["nouser-1"]
    assert "event_name_too_long" in lines["longname-1"]
    assert report.run_id[:8] in lines["longname-1"]
    assert "ok-1" not in lines
