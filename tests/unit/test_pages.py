"""Page and screen calls as tracks: mapping.md, Pages, screens and groups."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from connect_sync.transforms.pages import EVENT_PREFIXES, page_events, page_payloads
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
UNIX_T0 = 1714564800


def frame(rows: list[dict[str, Any]], schema=None) -> pd.DataFrame:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arrays = {k: pa.array([r.get(k) for r in rows], (schema or {}).get(k)) for k in keys}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def page(mid: str, user: str | None = "u1", seconds: float = 0, **cols: Any) -> dict[str, Any]:
    """A `pages` row as Segment writes it (message and context columns), plus the job's
    `canonical_id`."""
    ts = T0 + timedelta(seconds=seconds)
    return {
        "id": mid,
        "anonymous_id": "anon-1",
        "user_id": user,
        "canonical_id": user,
        "received_at": ts,
        "sent_at": ts,
        "original_timestamp": ts,
        "timestamp": ts,
        "uuid_ts": ts,
        "context_ip": "10.0.0.1",
        "context_page_path": "/pricing",
        "context_library_name": "analytics.js",
        **cols,
    }


def decoded(payloads: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(p) for p in payloads]


def test_a_named_page_is_a_track_with_its_properties():
    rows = frame(
        [
            page(
                "m1",
                name="Pricing",
                path="/pricing",
                url="https://example.com/pricing?ref=ad",
                title="Pricing | Example",
                referrer="https://google.com/",
                search="?ref=ad",
                category="Docs",
            )
        ]
    )
    built = page_payloads(rows, "pages")
    assert built.message_ids == ["m1"]
    assert decoded(built.payloads) == [
        {
            "user_id": "u1",
            "event": "[Segment Page] Pricing",
            "properties": {
                "name": "Pricing",
                "path": "/pricing",
                "url": "https://example.com/pricing?ref=ad",
                "title": "Pricing | Example",
                "referrer": "https://google.com/",
                "search": "?ref=ad",
                "category": "Docs",
            },
            "timestamp": UNIX_T0,
        }
    ]
    assert built.rejected.empty and not built.quality


def test_screens_take_their_own_prefix():
    rows = frame([page("s1", name="Settings", variation="b"), page("s2", name=None)])
    assert [p["event"] for p in decoded(page_payloads(rows, "screens").payloads)] == [
        "[Segment Screen] Settings",
        "[Segment Screen]",
    ]
    with pytest.raises(KeyError):
        page_payloads(rows, "groups")


def test_unnamed_pages_get_the_bare_prefix():
    rows = frame(
        [
            page("m1", name=None, path="/a"),
            page("m2", name="", path="/b"),
            page("m3", name="   ", path="/c"),
            page("m4", name=" Blog", path="/d"),
        ],
        {"name": pa.string()},
    )
    built = decoded(page_payloads(rows, "pages").payloads)
    assert [p["event"] for p in built] == [
        "[Segment Page]",
        "[Segment Page]",
        "[Segment Page]",
        "[Segment Page]  Blog",  # a name is sent as it is
    ]
    # a null or empty name is no property; a blank one is what the page sent
    assert [p["properties"].get("name") for p in built] == [None, None, "   ", " Blog"]


def test_a_table_without_a_name_column():
    rows = frame([page("m1", path="/a")])
    built = decoded(page_payloads(rows, "pages").payloads)
    assert built == [
        {
            "user_id": "u1",
            "event": "[Segment Page]",
            "properties": {"path": "/a"},
            "timestamp": UNIX_T0,
        }
    ]


def test_properties_keep_their_types_and_leave_segment_and_context_columns_out():
    rows = frame(
        [
            page("m1", name="Home", load_ms=120, logged_in=True, ratio=0.5, seen_at=T0),
            page("m2", name="Home", load_ms=None, logged_in=None, ratio=None, seen_at=None),
        ],
        {
            "load_ms": pa.int64(),
            "logged_in": pa.bool_(),
            "ratio": pa.float64(),
            "seen_at": pa.timestamp("us", tz="UTC"),
        },
    )
    first, second = decoded(page_payloads(rows, "pages").payloads)
    assert first["properties"] == {
        "name": "Home",
        "load_ms": 120,
        "logged_in": True,
        "ratio": 0.5,
        "seen_at": "2024-05-01T12:00:00Z",
    }
    assert second["properties"] == {"name": "Home"}  # nulls left out, never 120.0 or NaN


def test_a_page_without_any_property_sends_none():
    rows = frame([page("m1")])
    assert decoded(page_payloads(rows, "pages").payloads) == [
        {"user_id": "u1", "event": "[Segment Page]", "timestamp": UNIX_T0}
    ]


def test_rows_keep_their_order():
    rows = frame([page(f"m{i}", seconds=-i, name=f"P{i}") for i in range(5)])
    built = page_payloads(rows, "pages")
    assert built.message_ids == ["m0", "m1", "m2", "m3", "m4"]  # as given, not re-sorted
    assert [p["event"] for p in decoded(built.payloads)] == [
        f"[Segment Page] P{i}" for i in range(5)
    ]


def test_attributed_to_the_canonical_user():
    # an anonymous view before sign-up: the caller resolved its anonymous id to the user
    rows = frame([page("m1", user=None, name="Pricing") | {"canonical_id": "user-7"}])
    assert decoded(page_payloads(rows, "pages").payloads)[0]["user_id"] == "user-7"


def test_rows_without_a_user_or_with_a_name_too_long_are_rejected():
    too_long = "x" * (200 - len("[Segment Page] ") + 1)
    longest = "y" * (200 - len("[Segment Page] "))
    rows = frame(
        [
            page("m1", name="Home"),
            page("m2", user=None, name="Home"),
            page("m3", name=too_long),
            page("m4", name=longest),
        ]
    )
    built = page_payloads(rows, "pages")
    assert built.message_ids == ["m1", "m4"]
    assert len(decoded(built.payloads)[1]["event"]) == 200
    rejected = built.rejected
    assert rejected["message_id"].tolist() == ["m2", "m3"]
    assert rejected["reason"].tolist() == ["missing_user_id", "event_name_too_long"]
    assert pd.isna(rejected["user_id"].iloc[0]) and rejected["user_id"].iloc[1] == "u1"
    assert built.quality == {"missing_user_id": 1, "event_name_too_long": 1}


def test_no_rows():
    rows = frame([page("m1", name="Home")]).iloc[:0]
    built = page_payloads(rows, "pages")
    assert built.message_ids == [] and built.payloads == [] and built.rejected.empty


NAMES = st.one_of(st.none(), st.text(max_size=12), st.sampled_from(["", " ", "Pricing"]))


@settings(max_examples=100, deadline=None)
@given(st.lists(NAMES, min_size=1, max_size=20), st.sampled_from(sorted(EVENT_PREFIXES)))
def test_event_names_equal_a_per_row_reference(names, table):
    prefix = EVENT_PREFIXES[table]
    expected = [prefix if n is None or not n.strip() else f"{prefix} {n}" for n in names]
    assert page_events(pa.array(names, pa.string()), prefix).to_pylist() == expected
