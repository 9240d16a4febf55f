"""The pipeline over the streamed reads: tiny chunks give exactly what one chunk gives."""

from __future__ import annotations

from pathlib import Path

import orjson
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings
from tests.segment_rows import T0, row, write_tables

UNIX_T0 = int(T0.timestamp())


def _dry_run(path: Path, tmp_path: Path, chunk_size: int) -> tuple[bytes, dict]:
    output = tmp_path / f"out-{chunk_size}.jsonl"
    settings = Settings(
        warehouse_url=f"duckdb:///{path}",
        state_url=f"duckdb:///{tmp_path / f'state-{chunk_size}.duckdb'}",
        source_schema="segment",
        chunk_size=chunk_size,
    )
    report = run_sync(settings, SyncOptions(dry_run=True, output=output))
    counts = report.as_dict()
    for volatile in ("duration_s", "run_id", "started", "finished"):
        counts.pop(volatile, None)
    return output.read_bytes(), counts


def test_chunked_reads_and_event_chunks_send_the_same_items(tmp_path: Path) -> None:
    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, users=300, seed=5)

    whole, whole_counts = _dry_run(path, tmp_path, 1_000_000)
    chunked, chunked_counts = _dry_run(path, tmp_path, 7)

    assert whole.count(b"\n") > 1000
    assert b'"properties"' in whole
    assert chunked == whole
    assert chunked_counts == whole_counts


def test_tracks_stored_out_of_order_are_sent_oldest_first_and_the_first_copy_wins(
    tmp_path: Path,
) -> None:
    """The pipeline reads tracks in storage order and orders them itself: by timestamp,
    then received_at, then id; of a message stored twice, its earliest row is sent."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    stored = [
        row(30, id="m-late", user_id="u1", event="b", event_text="B"),
        row(10, id="m-dup", user_id="u1", event="a", event_text="Second copy"),
        row(5, id="m-dup", user_id="u1", event="a", event_text="First copy"),
        row(20, id="m-tie-b", user_id="u1", event="a", event_text="Tie b"),
        row(20, id="m-tie-a", user_id="u1", event="a", event_text="Tie a"),
    ]
    write_tables(url, "segment", {"tracks": stored})
    output = tmp_path / "out.jsonl"
    settings = Settings(
        warehouse_url=url, state_url=f"duckdb:///{tmp_path / 's.duckdb'}", build_threads=2
    )
    report = run_sync(settings, SyncOptions(dry_run=True, output=output, streams=("events",)))
    sent = [orjson.loads(line)["body"] for line in output.read_bytes().splitlines()]
    assert [(b["event"], b["timestamp"]) for b in sent] == [
        ("First copy", UNIX_T0 + 5 * 60),
        ("Tie a", UNIX_T0 + 20 * 60),
        ("Tie b", UNIX_T0 + 20 * 60),
        ("B", UNIX_T0 + 30 * 60),
    ]
    assert report.events_read == 5 and report.events_deduplicated == 1
