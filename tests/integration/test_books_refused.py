"""Books after sending: what Connect refused or never answered, on a real state store
(kills mutants of Books.refused / refused_again / replayed / forgotten; see
docs/mutation.md)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from connect_sync.connect.client import DeliveryStats, Rejection
from connect_sync.flows.books import Booked, Books
from connect_sync.flows.report import RunReport

from tests.integration.test_books import books_of, store  # noqa: F401  (fixture)


def test_refused_merges_the_journal_then_records_each_refusal(store, tmp_path: Path) -> None:  # noqa: F811
    books = books_of(store)
    books.open_journal(tmp_path / "journal", merge_partitions=False)
    books.delivered("event")(["ok-1"])
    stats = DeliveryStats(
        requests=3,
        rejected=[Rejection(f"bad-{i}", {"user_id": "u"}, "invalid", 400) for i in range(2)],
        failed=[Rejection("late", {"user_id": "v"}, "timeout", 503, True)],
    )
    books.refused("events", "/v2/track/batch", stats, by_message_id=True)
    assert store.delivered_among("event", ["ok-1"]) == {"ok-1"}  # merged first
    assert books.report.rejected_by_reason == {"invalid": 2}
    assert books.report.streams["events"].rejected == 2 and books.report.undelivered == 1
    recorded = store.rejections().sort_values("message_id")
    assert recorded["message_id"].tolist() == ["bad-0", "bad-1", "late"]
    assert recorded["retryable"].tolist() == [False, False, True]


def test_refused_again_and_replayed_write_only_outside_a_dry_run(store) -> None:  # noqa: F811
    rows = pd.DataFrame({"message_id": ["m"], "user_id": ["u"], "reason": ["invalid"]})
    dry = Books(store, RunReport(), dry_run=True, moves_cursors=False)
    dry.refused_again("events", "/v2/track/batch", rows)
    dry.refused(
        "events", "/e", DeliveryStats(failed=[Rejection("x", {}, "t", 503)]), by_message_id=True
    )
    assert store.rejections().empty
    books = books_of(store)
    books.refused_again("events", "/v2/track/batch", rows.iloc[:0])
    assert store.rejections().empty
    books.refused_again("events", "/v2/track/batch", rows)
    [rejection_id] = store.rejections(pending_only=True)["rejection_id"]
    dry.replayed([rejection_id])
    books.replayed([])
    assert len(store.rejections(pending_only=True)) == 1
    books.replayed([rejection_id])
    assert store.rejections(pending_only=True).empty


def test_chunks_without_rejections_and_forgotten_profiles(store) -> None:  # noqa: F811
    books = books_of(store)
    assert list(books.booked("events", [("c", Booked())])) == ["c"]
    store.record_fingerprints([("old", "f")], "r")
    Books(store, RunReport(), dry_run=True, moves_cursors=False).forgotten()(["old"])
    assert store.fingerprints(["old"]) == {"old": "f"}
    books.forgotten()(["old"])
    assert store.fingerprints(["old"]) == {}
