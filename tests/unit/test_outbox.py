"""The dry-run outbox writes what would be sent, one JSON line per payload, in order,
whether payloads come as items or as chunks, as JSON bytes or as dicts."""

from __future__ import annotations

from pathlib import Path

import orjson
from connect_sync.connect.client import ItemChunk, items_of
from connect_sync.connect.outbox import DryRunOutbox


def lines(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_chunks_of_bytes_and_dicts_are_written_in_order(tmp_path: Path) -> None:
    path = tmp_path / "dry.jsonl"
    outbox = DryRunOutbox(path)
    progress: list[int] = []
    chunks = [
        ItemChunk(["u1", "u2"], [b'{"user_id":"u1"}', b'{"user_id":"u2"}']),
        ItemChunk([], []),
        ItemChunk(
            [f"u{i}" for i in range(3, 2503)], [{"user_id": f"u{i}"} for i in range(3, 2503)]
        ),
    ]
    stats = outbox.send_chunks(
        "identify", chunks, on_progress=lambda s: progress.append(s.processed)
    )
    outbox.close()
    written = lines(path)
    assert [w["body"]["user_id"] for w in written] == [f"u{i}" for i in range(1, 2503)]
    assert {w["endpoint"] for w in written} == {"/v2/identify"}
    assert stats.sent == stats.processed == 2502 and progress[-1] == 2502


def test_items_and_chunks_write_the_same_file(tmp_path: Path) -> None:
    chunks = [ItemChunk(["m1", "m2"], [b'{"event":"a"}', {"event": "b"}])]
    by_items, by_chunks = tmp_path / "items.jsonl", tmp_path / "chunks.jsonl"
    for path, send in ((by_items, "send"), (by_chunks, "send_chunks")):
        outbox = DryRunOutbox(path)
        getattr(outbox, send)("track", items_of(chunks) if send == "send" else chunks)
        outbox.close()
    assert by_items.read_bytes() == by_chunks.read_bytes()
    assert [w["body"]["event"] for w in lines(by_items)] == ["a", "b"]


def test_items_of_yields_every_item_in_order() -> None:
    chunks = [ItemChunk(["a"], [b"1"]), ItemChunk([], []), ItemChunk(["b", "c"], [b"2", b"3"])]
    assert list(items_of(chunks)) == [("a", b"1"), ("b", b"2"), ("c", b"3")]


def test_without_a_file_only_counts(tmp_path: Path) -> None:
    stats = DryRunOutbox(None).send_chunks("track", [ItemChunk(["m1"], [b"{}"])])
    assert stats.sent == 1
