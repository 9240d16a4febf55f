"""Pages, screens and groups end to end (mapping.md, Pages, screens and groups): hand-built
Segment rows in DuckDB and PostgreSQL, the pipeline, and the sandbox over real HTTP."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.flows.report import RunReport
from connect_sync.warehouse.segment import Window

from tests.segment_rows import T0, at, group_row, page_row, row, sandbox_settings, write_tables


def sync(warehouse: tuple[str, str], sandbox, **options: Any) -> RunReport:
    report = run_sync(sandbox_settings(*warehouse, sandbox), SyncOptions(**options))
    assert report.status == "succeeded", report.error or report.streams_failed
    return report


def events(sandbox, user_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox.url}/_sandbox/events", params={"user_id": user_id}, timeout=10)
    response.raise_for_status()
    return sorted(response.json(), key=lambda e: e["timestamp"])


def profile(sandbox, user_id: str) -> dict[str, Any]:
    response = httpx.get(f"{sandbox.url}/_sandbox/users/{quote(user_id, safe='')}", timeout=10)
    response.raise_for_status()
    return response.json()


def visit_then_signup() -> dict[str, list[dict[str, Any]]]:
    """An anonymous visitor reads the pricing page and opens the app, then signs up (the
    identify links the anonymous id to u1) and keeps browsing."""
    return {
        "identifies": [row(10, anonymous_id="anon-1", user_id="u1", email="u1@example.com")],
        "pages": [
            page_row(1, name="Pricing", anonymous_id="anon-1", path="/pricing", title="Plans"),
            page_row(2, name=None, anonymous_id="anon-1", path="/"),
            page_row(3, name="  ", user_id="u1", anonymous_id="anon-1", path="/blank"),
            page_row(11, name="Docs", user_id="u1", path="/docs", seats=3),
        ],
        "screens": [page_row(4, name="Home", anonymous_id="anon-1", tab="feed")],
    }


def test_pages_and_screens_become_tracks_attributed_after_signup(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(url, schema, visit_then_signup())

    report = sync(warehouse, sandbox)

    sent = events(sandbox, "u1")
    assert [e["event"] for e in sent] == [
        "[Segment Page] Pricing",
        "[Segment Page]",
        "[Segment Page]",
        "[Segment Screen] Home",
        "[Segment Page] Docs",
    ]
    assert sent[0]["properties"] == {"name": "Pricing", "path": "/pricing", "title": "Plans"}
    assert sent[1]["properties"] == {"path": "/"}  # no name: nothing to send for it
    assert sent[3]["properties"] == {"name": "Home", "tab": "feed"}
    assert sent[4]["properties"] == {"name": "Docs", "path": "/docs", "seats": 3}  # typed
    assert sent[0]["timestamp"] == pytest.approx(at(1).timestamp())
    assert events(sandbox, "anon-1") == []  # attributed to the user it was linked to
    assert (report.pages_sent, report.screens_sent) == (4, 1)
    names = {e["event"] for e in httpx.get(f"{sandbox.url}/_sandbox/events", timeout=10).json()}
    assert "[Segment Page] Pricing" in names


def test_page_duplicates_are_sent_once_and_never_again(warehouse, sandbox) -> None:
    url, schema = warehouse
    first = page_row(1, id="p-1", name="Pricing", user_id="u1")
    write_tables(url, schema, {"pages": [first, {**first, "uuid_ts": at(3)}]})

    report = sync(warehouse, sandbox)
    assert (report.pages_sent, report.pages_deduplicated) == (1, 1)

    write_tables(url, schema, {"pages": [page_row(5, id="p-2", name="Docs", user_id="u1")]})
    again = sync(warehouse, sandbox)

    assert again.pages_sent == 1 and again.pages_unchanged == 1  # p-1 read again, not sent
    assert [e["event"] for e in events(sandbox, "u1")] == [
        "[Segment Page] Pricing",
        "[Segment Page] Docs",
    ]
    assert httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["duplicate_events"] == 0


def test_group_attributes_are_the_latest_per_trait_over_every_row(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "groups": [
                group_row(1, anonymous_id="anon-1", group_id="g1", name="Acme", plan="free"),
                group_row(2, user_id="u1", group_id="g1", plan="pro", employees=10),
                group_row(3, user_id="u1", group_id="g1", plan=None, employees=12),
                group_row(4, user_id="u1", group_id="g2", name="Beta"),
                group_row(5, user_id="u2", group_id=None, name="nowhere"),
            ],
            "identifies": [row(0, anonymous_id="anon-1", user_id="u1")],
        },
    )

    report = sync(warehouse, sandbox)

    assert profile(sandbox, "u1")["groups"] == {
        "g1": {"name": "Acme", "plan": "pro", "employees": 12},
        "g2": {"name": "Beta"},
    }
    assert report.groups_sent == 2
    assert report.rejected_by_reason["missing_group_id"] == 1

    again = sync(warehouse, sandbox)  # nothing new: nothing sent
    assert again.groups_sent == 0

    write_tables(url, schema, {"groups": [group_row(9, user_id="u1", group_id="g2", plan="x")]})
    changed = sync(warehouse, sandbox)
    assert changed.groups_sent == 1  # g2 changed; g1 re-evaluated, unchanged
    assert changed.groups_unchanged == 1
    assert profile(sandbox, "u1")["groups"]["g2"] == {"name": "Beta", "plan": "x"}


def test_a_user_s_current_group_is_the_group_called_last_across_runs(warehouse, sandbox) -> None:
    """Connect keeps one current group per user: the one the last group identify named.
    The group called last stays current whatever the ids' order, when an older group's
    attributes change, and moves when an older group is called again."""
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "groups": [
                group_row(1, user_id="u1", group_id="g9", name="Nine"),
                group_row(2, user_id="u1", group_id="g10", name="Ten"),  # "g10" < "g9"
            ]
        },
    )
    sync(warehouse, sandbox)
    assert profile(sandbox, "u1")["group_id"] == "g10"

    # g9 is called again, with a new plan: it becomes current (sent last)
    write_tables(url, schema, {"groups": [group_row(3, user_id="u1", group_id="g9", plan="x")]})
    report = sync(warehouse, sandbox)
    assert profile(sandbox, "u1")["group_id"] == "g9"
    assert profile(sandbox, "u1")["groups"]["g9"] == {"name": "Nine", "plan": "x"}
    assert report.groups_sent == 2  # g9 changed and is current now; g10 is current no more

    # g10 is called again with nothing new: it is current again, and sent so
    write_tables(url, schema, {"groups": [group_row(4, user_id="u1", group_id="g10")]})
    sync(warehouse, sandbox)
    assert profile(sandbox, "u1")["group_id"] == "g10"

    # an older group's attributes change (a call older than g10's, loaded late): g9 is
    # sent, then g10 again
    write_tables(url, schema, {"groups": [group_row(3.5, user_id="u1", group_id="g9", plan="y")]})
    again = sync(warehouse, sandbox)
    assert profile(sandbox, "u1")["groups"]["g9"] == {"name": "Nine", "plan": "y"}
    assert profile(sandbox, "u1")["group_id"] == "g10"  # sent after g9, it stays current
    assert again.groups_sent == 2


def test_a_source_without_pages_screens_or_groups_runs_the_rest(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"tracks": [row(1, user_id="u1", event="a", event_text="A")]})

    report = sync(warehouse, sandbox)

    assert report.events_sent == 1
    assert set(report.streams_absent) == {"groups", "pages", "screens"}


def test_dry_run_backfill_and_streams_option_take_the_new_streams(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    write_tables(url, schema, visit_then_signup())
    write_tables(url, schema, {"groups": [group_row(12, user_id="u1", group_id="g1", plan="pro")]})
    output = tmp_path / "dry.jsonl"

    sync(warehouse, sandbox, dry_run=True, output=output, streams=("pages", "groups"))

    lines = [orjson.loads(line) for line in output.read_bytes().splitlines()]
    assert [line["endpoint"] for line in lines] == ["/v2/identify"] + ["/v2/track"] * 4
    assert lines[0]["body"] == {
        "user_id": "u1",
        "group_id": "g1",
        "group_attributes": {"plan": "pro"},
    }
    assert httpx.get(f"{sandbox.url}/_sandbox/stats", timeout=10).json()["track_items"] == 0

    sync(warehouse, sandbox)  # the real run
    window = Window("received_at", T0, T0 + timedelta(minutes=2))
    backfill = sync(warehouse, sandbox, backfill=window, kind="backfill")
    assert backfill.pages_read == 1 and backfill.pages_sent == 0  # delivered already
    assert len(events(sandbox, "u1")) == 5


def test_current_groups_are_sent_after_every_other_group_of_the_run(
    warehouse, sandbox, tmp_path: Path
) -> None:
    """Batches go out concurrently (and a killed run's batch is sent again), so a user's
    groups in one phase could arrive in any order: every other group is sent first, the
    users' current groups (each one's latest call) only once those are delivered."""
    url, schema = warehouse
    calls = [
        group_row(minute, user_id=f"u{user}", group_id=f"g{group}", plan=f"p{minute}")
        for user in range(6)
        for minute, group in ((user * 10 + 1, 1), (user * 10 + 2, 2), (user * 10 + 3, user % 3))
    ]
    write_tables(url, schema, {"groups": calls})
    output = tmp_path / "dry.jsonl"
    sync(warehouse, sandbox, dry_run=True, output=output, streams=("groups",))

    sent = [orjson.loads(line)["body"] for line in output.read_bytes().splitlines()]
    # a user's current group: the group of their latest call (g0, g1 or g2 by user)
    current = {f"u{user}": f"g{user % 3}" for user in range(6)}
    is_current = [body["group_id"] == current[body["user_id"]] for body in sent]
    assert sorted(is_current) == is_current  # every other group first, then the current ones
    assert sum(is_current) == 6 and len(sent) == 14  # u1, u2, u4, u5 called theirs twice

    sync(warehouse, sandbox)
    assert {u: profile(sandbox, u)["group_id"] for u in current} == current
