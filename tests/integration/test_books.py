"""Books on a real state store: finishing a run whose journal cannot be merged, and the
cursor moving only when nothing of its stream is left undelivered."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from connect_sync.connect.client import DeliveryStats, Rejection
from connect_sync.flows.books import Booked, Books
from connect_sync.flows.report import RunReport
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import StateStore

NOON = datetime(2026, 11, 1, 12, tzinfo=UTC)


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(
        create_engine(f"duckdb:///{tmp_path / 's.duckdb'}", create_dirs=True), "cs", "segment"
    )
    store.migrate()
    return store


def books_of(store: StateStore, *, dry_run: bool = False, moves_cursors: bool = True) -> Books:
    books = Books(store, RunReport(), dry_run=dry_run, moves_cursors=moves_cursors)
    books.report.run_id = books.start_run("sync")
    return books


def test_a_run_whose_journal_cannot_be_merged_fails_and_keeps_the_acks(
    store: StateStore, tmp_path: Path
) -> None:
    journal = tmp_path / "journal"
    books = books_of(store)
    books.open_journal(journal, merge_partitions=True)
    books.delivered("event")(["m-1", "m-2"])
    with store.engine.begin() as conn:  # a real database error at merge time
        conn.execute(sa.text("DROP TABLE cs.delivered"))

    books.finish_run()  # does not raise: the run is failed and its row written

    assert books.report.status == "failed"
    assert books.report.error  # (DuckDB reports the aborted transaction, not the table)
    [run] = store.recent_runs()
    assert run["run_id"] == books.report.run_id and run["status"] == "failed"
    assert len(list(journal.glob("*.acks"))) == 1  # kept for the next run
    store.migrate()  # the table is back
    later = books_of(store)
    later.open_journal(journal, merge_partitions=True)
    assert later.report.acks_recovered == 2
    assert store.delivered_among("event", ["m-1", "m-2", "m-3"]) == {"m-1", "m-2"}
    assert not list(journal.glob("*.acks"))


def test_a_run_whose_journal_merges_succeeds_and_leaves_no_segment(
    store: StateStore, tmp_path: Path
) -> None:
    books = books_of(store)
    books.open_journal(tmp_path / "journal", merge_partitions=True)
    books.delivered("event")(["m-1"])
    books.report.status = "succeeded"
    books.finish_run()
    assert store.recent_runs()[0]["status"] == "succeeded"
    assert store.delivered_among("event", ["m-1"]) == {"m-1"}
    assert not list((tmp_path / "journal").glob("*.acks"))


def failed(n: int) -> list[Rejection]:
    return [Rejection(f"k{i}", {"user_id": f"u{i}"}, "timeout", 503, True) for i in range(n)]


@pytest.mark.parametrize(
    ("stats", "moved"),
    [
        (DeliveryStats(), True),
        (DeliveryStats(rejected=[Rejection("k", {"user_id": "u"}, "bad", 400)]), True),  # recorded
        (DeliveryStats(failed=failed(1)), False),
        (DeliveryStats(unsent=1), False),
    ],
)
def test_the_cursor_moves_only_when_nothing_is_left_undelivered(
    store: StateStore, stats: DeliveryStats, moved: bool
) -> None:
    books = books_of(store)
    books.settle("events", "tracks", NOON, stats)
    assert store.cursors() == ({"tracks": NOON} if moved else {})
    assert books.report.streams_failed == ([] if moved else ["events"])
    assert ("events" in books.settled) is moved


@pytest.mark.parametrize(
    ("dry_run", "moves_cursors", "newest"),
    [(True, True, NOON), (False, False, NOON), (False, True, None)],
)
def test_no_cursor_for_a_dry_run_a_subset_or_an_empty_window(
    store: StateStore, dry_run: bool, moves_cursors: bool, newest: datetime | None
) -> None:
    books = books_of(store, dry_run=dry_run, moves_cursors=moves_cursors)
    books.settle("events", "tracks", newest, DeliveryStats())
    assert store.cursors() == {}
    assert books.settled == {"events": newest} and not books.report.streams_failed


def test_booked_chunks_carry_their_side_records_into_the_books(
    store: StateStore, tmp_path: Path
) -> None:
    books = books_of(store)
    bad = pd.DataFrame({"message_id": ["m-9"], "user_id": [None], "reason": ["no_user"]})
    built = [
        ("chunk-1", Booked(rejected=bad, anonymous_profiles=["anon-1"])),
        ("chunk-2", Booked(rejected=bad.iloc[:0])),
    ]
    assert list(books.booked("events", built)) == ["chunk-1", "chunk-2"]
    assert books.report.streams["events"].rejected == 1
    assert books.report.rejected_by_reason == {"no_user": 1}
    assert store.rejections()["message_id"].tolist() == ["m-9"]
    assert store.profiles_among(["anon-1", "anon-2"]) == {"anon-1"}


def test_acks_reach_the_state_store_at_each_checkpoint_and_at_close(
    store: StateStore, tmp_path: Path
) -> None:
    books = books_of(store)
    books.open_journal(tmp_path / "journal", merge_partitions=False)
    books.delivered("event")(["m-1"])
    pending = {"u1": "f1", "u2": "f2"}
    books.fingerprints(pending)(["u1", "stranger"])
    assert pending == {"u2": "f2"}  # acknowledged ones leave what is in flight
    books.checkpoint()
    assert store.delivered_among("event", ["m-1"]) == {"m-1"}
    assert store.fingerprints(["u1", "u2"]) == {"u1": "f1"}
    books.delivered("alias")(["a-1"])
    books.close_journal()
    assert store.delivered_among("alias", ["a-1"]) == {"a-1"}


def test_a_dry_run_books_nothing(store: StateStore) -> None:
    books = Books(store, RunReport(), dry_run=True, moves_cursors=True)
    assert books.start_run("sync") == "dry-run"
    bad = pd.DataFrame({"message_id": ["m-9"], "user_id": ["u"], "reason": ["too_long"]})
    list(books.booked("events", [("c", Booked(rejected=bad, anonymous_profiles=["anon"]))]))
    books.finish_run()
    assert books.report.streams["events"].rejected == 1  # counted, not written
    assert store.rejections().empty and not store.profiles_among(["anon"])
    assert not store.recent_runs()
