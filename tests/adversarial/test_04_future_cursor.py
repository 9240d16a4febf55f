"""#17.4: a row loaded "in the future" (uuid_ts beyond now + skew) is not sent, is counted,
and moves no cursor past now: rows loaded later are still read, and it is sent once its
time has come."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from connect_sync.flows.books import CLOCK_SKEW
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables


def _track(user: str, loaded: datetime, id: str) -> dict:
    return row(0, id=id, user_id=user, event="Clicked", event_text="Clicked", uuid_ts=loaded)


def test_future_row_does_not_move_cursor_past_now(warehouse, sandbox, tmp_path: Path) -> None:
    url, schema = warehouse
    now = datetime.now(UTC)
    future = now + timedelta(days=30)
    write_tables(
        url,
        schema,
        {
            "tracks": [
                _track("u1", now - timedelta(hours=2), "past-1"),
                _track("u2", future, "future-1"),
            ],
            "identifies": [row(0, user_id="u9", email="u9@x.io", uuid_ts=future)],
        },
    )
    settings = Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=f"{schema}_state",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
        journal_dir=tmp_path / "journal",
        lookback_hours=0,
    )
    first = run_sync(settings, SyncOptions())
    assert first.status == "succeeded"
    assert first.events_sent == 1 and first.quality["loaded_in_future"] == 1
    store = StateStore(create_engine(url), settings.state_schema, settings.books_key)
    cursors = store.cursors()
    bound = datetime.now(UTC) + CLOCK_SKEW
    assert all(position <= bound for position in cursors.values()), cursors
    assert cursors["tracks"] >= now - timedelta(hours=2)
    # a row loaded now, after the run: the next run still reads it
    write_tables(url, schema, {"tracks": [_track("u3", datetime.now(UTC), "late-1")]})
    second = run_sync(settings, SyncOptions())
    assert second.status == "succeeded"
    assert second.events_sent == 1 and second.quality["loaded_in_future"] == 1
    assert store.delivered_among("event", ["past-1", "late-1", "future-1"]) == {
        "past-1",
        "late-1",
    }
    store.engine.dispose()


def test_rows_without_uuid_ts_are_counted_on_the_first_read(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "tracks": [
                _track("u1", datetime.now(UTC) - timedelta(hours=1), "stamped-1"),
                row(0, id="unstamped-1", user_id="u2", event="A", event_text="A", uuid_ts=None),
            ]
        },
    )
    settings = Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=f"{schema}_state",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
        journal_dir=tmp_path / "journal",
    )
    first = run_sync(settings, SyncOptions())
    assert first.status == "succeeded" and first.events_sent == 1
    assert first.quality["no_uuid_ts"] == 1
    second = run_sync(settings, SyncOptions())  # counted once, on the first full read
    assert second.quality["no_uuid_ts"] == 0
