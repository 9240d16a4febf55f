"""The job as operators run it: incremental runs, backfills, audiences, dry runs (issue 7)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import httpx
import orjson
import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.audience import AudienceError
from connect_sync.warehouse.segment import Window

from tests.segment_rows import row, sandbox_settings, write_tables


def _track(minutes: float, user: str, name: str = "Signed Up", **kw):
    return row(minutes, user_id=user, event=name.lower().replace(" ", "_"), event_text=name, **kw)


def test_incremental_runs_pick_up_new_and_late_rows(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [row(0, user_id="u1", email="u1@example.com")],
            "tracks": [_track(1, "u1"), _track(2, "u1", "Order Completed")],
        },
    )
    settings = sandbox_settings(url, schema, sandbox)
    first = run_sync(settings, SyncOptions())
    assert (first.users_sent, first.events_sent) == (1, 2)

    # New rows arrive, one of them late: loaded now, but older than the cursor's rows,
    # still inside the 24 h lookback.
    write_tables(
        url,
        schema,
        {
            "identifies": [row(10, user_id="u2", email="u2@example.com")],
            "tracks": [_track(11, "u2"), _track(0.5, "u1", "Product Viewed", loaded=2.5)],
        },
    )
    second = run_sync(settings, SyncOptions())

    assert second.status == "succeeded"
    assert second.users_sent == 1  # u2 only: u1 unchanged
    assert second.events_sent == 2  # u2's event and u1's late one; nothing re-sent
    stats = sandbox.stats()
    assert stats["events"] == 4 and stats["duplicate_events"] == 0 and stats["users"] == 2


def test_backfill_over_a_synced_window_sends_no_event_twice(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [row(0, user_id="u1", plan="free")],
            "tracks": [_track(m, "u1") for m in (1, 2, 3)],
        },
    )
    settings = sandbox_settings(url, schema, sandbox)
    run_sync(settings, SyncOptions())
    window = Window(
        "received_at", datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 12, 1, tzinfo=UTC)
    )

    report = run_sync(settings, SyncOptions(backfill=window, kind="backfill"))

    assert report.status == "succeeded"
    assert report.events_sent == 0
    assert report.events_already_delivered == 3
    assert sandbox.stats()["duplicate_events"] == 0


def test_audience_limits_users_and_events(warehouse, sandbox, tmp_path: Path) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, user_id="vip", is_vip=True),
                row(0, user_id="plain", is_vip=False),
                row(1, anonymous_id="anon-vip", user_id="vip"),
            ],
            "tracks": [
                _track(2, "vip"),
                _track(2, "plain"),
                row(3, anonymous_id="anon-vip", event="signed_up", event_text="Signed Up"),
            ],
        },
    )
    report = run_sync(sandbox_settings(url, schema, sandbox), SyncOptions(audience="vip_users"))

    assert report.status == "succeeded"
    assert report.users_sent == 1 and report.events_sent == 2
    events = httpx.get(f"{sandbox.url}/_sandbox/events").json()
    assert {e["user_id"] for e in events} == {"vip"}
    assert httpx.get(f"{sandbox.url}/_sandbox/users/plain").status_code == 404


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("SELECT anonymous_id FROM {schema}.identifies", "user_id column"),
        ("DELETE FROM {schema}.identifies", "SELECT"),
        ("WITH x AS (SELECT 1) INSERT INTO t SELECT * FROM x", "INSERT"),
        ("SELECT user_id FROM {schema}.identifies; DROP TABLE t", "single statement"),
    ],
)
def test_bad_audiences_fail_cleanly(
    warehouse, sandbox, tmp_path: Path, query: str, message: str
) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"identifies": [row(0, user_id="u1")]})
    path = tmp_path / "bad.sql"
    path.write_text(query)
    with pytest.raises(AudienceError, match=message):
        run_sync(sandbox_settings(url, schema, sandbox), SyncOptions(audience=str(path)))
    assert sandbox.stats()["requests"] == 0


def test_dry_run_file_equals_what_the_next_real_run_sends(warehouse, sandbox, tmp_path) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, anonymous_id="a1", first_name="Ann", logins=3),
                row(5, anonymous_id="a1", user_id="u1", email="ann@example.com"),
            ],
            "aliases": [row(4, previous_id="a1", user_id="u1", anonymous_id="a1")],
            "tracks": [
                _track(6, "u1"),
                row(1, anonymous_id="a1", event="product_viewed", event_text="Product Viewed"),
            ],
            "signed_up": [],
        },
    )
    settings = sandbox_settings(url, schema, sandbox)
    output = tmp_path / "dry.jsonl"
    dry = run_sync(settings, SyncOptions(dry_run=True, output=output))
    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]

    assert dry.status == "succeeded" and sandbox.stats()["requests"] == 0
    # A dry run moves no cursor and records nothing: a second one would send the same.
    output_again = tmp_path / "dry-again.jsonl"
    run_sync(settings, SyncOptions(dry_run=True, output=output_again))
    assert output_again.read_bytes() == output.read_bytes()
    assert [line["endpoint"] for line in lines] == (["/v2/identify"] * 2 + ["/v2/track"] * 2)
    real = run_sync(settings, SyncOptions())
    assert real.merges_sent + real.users_sent + real.events_sent == len(lines)
    profile = httpx.get(f"{sandbox.url}/_sandbox/users/u1").json()
    identify = next(line["body"] for line in lines if "email" in line["body"])
    assert profile["email"] == identify["email"]
    assert profile["attributes"] == identify.get("attributes", {})
    sent_events = sorted(
        (e["user_id"], e["event"], e["timestamp"])
        for e in httpx.get(f"{sandbox.url}/_sandbox/events").json()
    )
    dry_events = sorted(
        (b["user_id"], b["event"], b["timestamp"])
        for b in (line["body"] for line in lines if line["endpoint"] == "/v2/track")
    )
    assert sent_events == dry_events


def test_runs_read_only_from_the_cursor_minus_the_lookback(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [row(0, user_id="u1")],
            "tracks": [_track(m, "u1") for m in (1, 2, 3)],
        },
    )
    settings = sandbox_settings(url, schema, sandbox, lookback_hours=0)
    assert run_sync(settings, SyncOptions()).events_read == 3
    write_tables(url, schema, {"tracks": [_track(10, "u1")]})

    second = run_sync(settings, SyncOptions())

    # The cursor sits on the newest row read (loaded at minute 4): only it and the new row.
    assert second.events_read == 2
    assert second.events_sent == 1 and second.events_already_delivered == 1
