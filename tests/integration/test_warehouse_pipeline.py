"""The pipeline over the streamed reads: tiny chunks give exactly what one chunk gives."""

from __future__ import annotations

from pathlib import Path

from connect_sync.settings import Settings
from flows.pipeline import SyncOptions, run_sync
from warehouse.demo import build_demo_warehouse


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
