"""Identity resolution end to end: hand-built Segment rows in DuckDB and PostgreSQL, the
pipeline, and the sandbox's merged profiles over real HTTP."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.flows.report import RunReport

from connect_sync.settings import Settings
from tests.segment_rows import row, sandbox_settings, write_tables


def settings_for(warehouse: tuple[str, str], sandbox) -> Settings:
    return sandbox_settings(*warehouse, sandbox)


def sync(warehouse: tuple[str, str], sandbox, **options: Any) -> RunReport:
    report = run_sync(settings_for(warehouse, sandbox), SyncOptions(**options))
    assert report.status == "succeeded", report.error or report.streams_failed
    return report


def profile(sandbox, user_id: str) -> dict[str, Any] | None:
    response = httpx.get(f"{sandbox.url}/_sandbox/users/{quote(user_id, safe='')}", timeout=10)
    if response.status_code == 404:
        return None
    response.raise_for_status()
    return response.json()


def events(sandbox, user_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{sandbox.url}/_sandbox/events", params={"user_id": user_id}, timeout=10)
    response.raise_for_status()
    return response.json()


def track(minutes: float, event_text: str, **ids: Any) -> dict[str, Any]:
    slug = event_text.lower().replace(" ", "_")
    return row(minutes, event=slug, event_text=event_text, **ids)


# -- one person across an anonymous visit, sign-up, alias and a second device ------------


def visitor_rows() -> dict[str, list[dict[str, Any]]]:
    """Before sign-up: a web visit (identify with a trait, two events) and a phone app
    opened anonymously."""
    return {
        "identifies": [row(0, anonymous_id="anon-web", utm_source="newsletter")],
        "tracks": [
            track(1, "Product Viewed", anonymous_id="anon-web"),
            track(2, "App Opened", anonymous_id="anon-phone"),
        ],
    }


def signup_rows() -> dict[str, list[dict[str, Any]]]:
    """Sign-up on the web (event, alias, identify with the iOS token), then an identify
    from the phone (its Android token) and an order placed there."""
    signed_up = track(5, "Signed Up", anonymous_id="anon-web", id="msg-signup")
    return {
        "tracks": [
            signed_up,
            track(22, "Order Completed", anonymous_id="anon-phone", user_id="u1"),
        ],
        "signed_up": [{**signed_up, "plan": "trial"}],
        "aliases": [row(6, previous_id="anon-web", user_id="u1", anonymous_id="anon-web")],
        "identifies": [
            row(
                7,
                anonymous_id="anon-web",
                user_id="u1",
                email="ann@example.com",
                name="Ann Lee",
                context_device_type="ios",
                context_device_token="tok-ios",
            ),
            row(
                21,
                anonymous_id="anon-phone",
                user_id="u1",
                plan="pro",
                context_device_type="android",
                context_device_token="tok-android",
            ),
        ],
    }


def assert_one_person(sandbox) -> None:
    person = profile(sandbox, "u1")
    assert person is not None
    assert person["email"] == "ann@example.com"
    assert (person["first_name"], person["last_name"]) == ("Ann", "Lee")
    assert person["apns"] == ["tok-ios"]
    assert person["fcm"] == ["tok-android"]
    assert person["attributes"]["plan"] == "pro"
    assert person["attributes"]["utm_source"] == "newsletter"
    assert sorted(e["event"] for e in events(sandbox, "u1")) == [
        "App Opened",
        "Order Completed",
        "Product Viewed",
        "Signed Up",
    ]
    signed_up = [e for e in events(sandbox, "u1") if e["event"] == "Signed Up"]
    assert signed_up[0]["properties"] == {"plan": "trial"}
    assert profile(sandbox, "anon-web") is None and profile(sandbox, "anon-phone") is None
    assert events(sandbox, "anon-web") == events(sandbox, "anon-phone") == []
    stats = sandbox.stats()
    assert stats["users"] == 1
    assert stats["events"] == 4
    assert stats["duplicate_events"] == stats["rejected_items"] == 0


def test_visitor_signup_alias_and_second_device_become_one_profile(warehouse, sandbox) -> None:
    url, schema = warehouse
    rows = visitor_rows()
    for table, more in signup_rows().items():
        rows[table] = rows.get(table, []) + more
    write_tables(url, schema, rows)

    report = sync(warehouse, sandbox)

    assert_one_person(sandbox)
    assert report.merges_sent == 1
    assert report.users_sent == 1
    assert report.events_sent == 4
    assert report.identity_conflicts == report.identity_cycles == 0
    assert report.profiles_folded == 0


def test_anonymous_profiles_from_an_earlier_run_are_folded_into_the_user(
    warehouse, sandbox
) -> None:
    url, schema = warehouse
    write_tables(url, schema, visitor_rows())
    first = sync(warehouse, sandbox)
    assert first.users_sent == 1 and first.events_sent == 2
    assert profile(sandbox, "anon-web") is not None
    assert len(events(sandbox, "anon-phone")) == 1

    write_tables(url, schema, signup_rows())
    second = sync(warehouse, sandbox)

    # anon-web is merged by its alias row; anon-phone (events only, joined to u1 by an
    # identify row, no alias) is folded by a merge call of its own.
    assert second.merges_sent == 2
    assert second.profiles_folded == 1
    assert_one_person(sandbox)

    requests = sandbox.stats()["requests"]
    third = sync(warehouse, sandbox)
    assert third.merges_sent == third.users_sent == third.events_sent == 0
    assert sandbox.stats()["requests"] == requests


# -- alias chains, cycles, conflicts ------------------------------------------------------


def test_alias_chain_a_b_c_merges_everything_into_c(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, user_id="A", first_name="Al", plan="free"),
                row(3, user_id="B", email="al@example.com"),
            ],
            "tracks": [track(1, "Logged In", user_id="A"), track(4, "Logged In", user_id="B")],
        },
    )
    first = sync(warehouse, sandbox)
    assert first.users_sent == 2 and profile(sandbox, "A") is not None

    write_tables(
        url,
        schema,
        {
            "aliases": [
                row(5, previous_id="A", user_id="B"),
                row(10, previous_id="B", user_id="C"),
            ],
            "identifies": [row(11, user_id="C", plan="pro")],
            "tracks": [track(12, "Logged In", user_id="C")],
        },
    )
    second = sync(warehouse, sandbox)

    assert second.merges_sent == 2
    assert profile(sandbox, "A") is None and profile(sandbox, "B") is None
    person = profile(sandbox, "C")
    assert person is not None
    assert person["first_name"] == "Al"
    assert person["email"] == "al@example.com"
    assert person["attributes"]["plan"] == "pro"
    assert len(events(sandbox, "C")) == 3
    assert sandbox.stats()["users"] == 1

    third = sync(warehouse, sandbox)
    assert third.merges_sent == 0


def test_alias_cycle_is_reported_and_resolves_to_one_profile(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [row(0, user_id="A", plan="free"), row(1, user_id="B", team="red")],
            "aliases": [row(2, previous_id="A", user_id="B"), row(3, previous_id="B", user_id="A")],
            "tracks": [track(4, "Logged In", user_id="A"), track(5, "Logged In", user_id="B")],
        },
    )

    report = sync(warehouse, sandbox)

    assert report.identity_cycles == 1
    assert any("alias cycle" in line for line in report.identity_examples)
    # The most recent alias (B -> A) names the canonical id; A -> A merges nothing.
    person = profile(sandbox, "A")
    assert person is not None and person["attributes"] == {"plan": "free", "team": "red"}
    assert profile(sandbox, "B") is None
    assert len(events(sandbox, "A")) == 2
    assert report.merges_sent == 1

    requests = sandbox.stats()["requests"]
    again = sync(warehouse, sandbox)
    assert again.merges_sent == 0
    assert sandbox.stats()["requests"] == requests


def test_two_users_on_one_device_stay_two_profiles(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(1, anonymous_id="kiosk", user_id="alice", email="alice@example.com"),
                row(5, anonymous_id="kiosk", user_id="bob", email="bob@example.com"),
            ],
            "tracks": [
                track(2, "Page Viewed", anonymous_id="kiosk", user_id="alice"),
                track(8, "Page Viewed", anonymous_id="kiosk"),
            ],
        },
    )

    report = sync(warehouse, sandbox)

    assert report.identity_conflicts == 1
    assert any("alice, bob" in line for line in report.identity_examples)
    assert profile(sandbox, "alice")["email"] == "alice@example.com"
    assert profile(sandbox, "bob")["email"] == "bob@example.com"
    # The anonymous event goes to the user the device was seen with most recently.
    assert len(events(sandbox, "alice")) == 1 and len(events(sandbox, "bob")) == 1
    assert sandbox.stats()["users"] == 2


# -- deduplication on message id ----------------------------------------------------------


def test_duplicate_message_ids_in_one_batch_and_across_runs(warehouse, sandbox) -> None:
    url, schema = warehouse
    click = track(1, "Button Clicked", user_id="u1", id="msg-dup")
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, user_id="u1", id="ident-dup", plan="free"),
                row(0, user_id="u1", id="ident-dup", plan="free", loaded=30),
            ],
            "tracks": [
                click,
                {**click, "uuid_ts": row(40)["uuid_ts"]},
                track(2, "Viewed", user_id="u1"),
            ],
            "aliases": [
                row(3, id="alias-dup", previous_id="anon", user_id="u1"),
                row(3, id="alias-dup", previous_id="anon", user_id="u1", loaded=50),
            ],
        },
    )

    first = sync(warehouse, sandbox)

    assert first.events_deduplicated == 1
    assert first.events_sent == 2
    assert first.merges_sent == 1
    assert sandbox.stats()["events"] == 2

    # The same message ids loaded again later (BigQuery keeps duplicates), one new event.
    write_tables(
        url,
        schema,
        {
            "tracks": [{**click, "uuid_ts": row(90)["uuid_ts"]}, track(91, "Viewed", user_id="u1")],
            "aliases": [row(3, id="alias-dup", previous_id="anon", user_id="u1", loaded=92)],
        },
    )
    second = sync(warehouse, sandbox)

    assert second.events_sent == 1
    assert second.events_already_delivered >= 1
    assert second.merges_sent == 0
    stats = sandbox.stats()
    assert stats["events"] == 3 and stats["duplicate_events"] == 0


# -- partial identifies -------------------------------------------------------------------


FULL = dict(first_name="Mia", last_name="Wong", email="mia@example.com", plan="free", seats=3)


def test_partial_identify_after_a_full_one_keeps_the_old_traits(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"identifies": [row(0, user_id="mia", **FULL)]})
    sync(warehouse, sandbox)

    write_tables(url, schema, {"identifies": [row(60, user_id="mia", plan="pro")]})
    dry = tmp_path / "dry.jsonl"
    sync(warehouse, sandbox, dry_run=True, output=dry)
    second = sync(warehouse, sandbox)

    # What the job sends is the whole merged profile, not the partial call.
    lines = [orjson.loads(line) for line in dry.read_bytes().splitlines()]
    bodies = [line["body"] for line in lines if line["endpoint"] == "/v2/identify"]
    assert bodies == [
        {
            "user_id": "mia",
            "first_name": "Mia",
            "last_name": "Wong",
            "email": "mia@example.com",
            "attributes": {"plan": "pro", "seats": 3},
        }
    ]
    assert second.users_sent == 1
    person = profile(sandbox, "mia")
    assert (person["first_name"], person["email"]) == ("Mia", "mia@example.com")
    assert person["attributes"] == {"plan": "pro", "seats": 3}


def test_incremental_selection_still_merges_over_every_row(
    warehouse, sandbox, tmp_path: Path
) -> None:
    """A window holding only the partial identify (a backfill window here) re-evaluates
    its user over all rows, the older ones and those of its anonymous id included."""
    from connect_sync.warehouse.segment import Window

    from tests.segment_rows import at

    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, anonymous_id="anon-mia", company="Acme"),
                row(1, anonymous_id="anon-mia", user_id="mia", **FULL),
                row(2, user_id="other", plan="free"),
                row(60, user_id="mia", plan="pro"),
            ]
        },
    )
    dry = tmp_path / "window.jsonl"
    report = sync(
        warehouse, sandbox, dry_run=True, output=dry, backfill=Window("received_at", at(50), at(70))
    )

    bodies = [orjson.loads(line)["body"] for line in dry.read_bytes().splitlines()]
    assert report.users_considered == 1
    assert bodies == [
        {
            "user_id": "mia",
            "first_name": "Mia",
            "last_name": "Wong",
            "email": "mia@example.com",
            "attributes": {"company": "Acme", "plan": "pro", "seats": 3},
        }
    ]
