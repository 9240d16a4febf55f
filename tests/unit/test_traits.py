"""Latest traits (the merge of all of a user's identify rows) and device tokens."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pyarrow as pa
from connect_sync.transforms.traits import (
    chronological,
    chronological_rank,
    device_platforms,
    device_tokens,
    latest_traits,
)
from hypothesis import given, settings
from hypothesis import strategies as st

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def frame(rows, schema=None) -> pd.DataFrame:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arrays = {k: pa.array([r.get(k) for r in rows], (schema or {}).get(k)) for k in keys}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def test_latest_non_null_per_column_in_timestamp_order():
    rows = [
        {"id": "3", "canonical_id": "u", "timestamp": at(3), "received_at": at(3), "plan": None},
        {"id": "1", "canonical_id": "u", "timestamp": at(1), "received_at": at(9), "plan": "old"},
        {"id": "2", "canonical_id": "u", "timestamp": at(2), "received_at": at(2), "plan": "new"},
    ]
    latest = latest_traits(frame(rows))
    assert latest.loc["u", "plan"] == "new"  # timestamp orders, not received_at or input order


def test_ties_go_to_received_at_then_id():
    rows = [
        {"id": "b", "canonical_id": "u", "timestamp": at(0), "received_at": at(1), "x": "b"},
        {"id": "a", "canonical_id": "u", "timestamp": at(0), "received_at": at(1), "x": "a"},
        {"id": "c", "canonical_id": "u", "timestamp": at(0), "received_at": at(0), "x": "c"},
        {"id": "z", "canonical_id": "v", "timestamp": at(0), "received_at": at(0), "x": "z"},
    ]
    latest = latest_traits(frame(rows))
    assert latest.loc["u", "x"] == "b"  # same timestamp: latest received_at, then greatest id
    assert latest.loc["v", "x"] == "z"


def test_missing_timestamp_counts_as_oldest():
    rows = [
        {"id": "1", "canonical_id": "u", "timestamp": None, "received_at": at(5), "x": "none"},
        {"id": "2", "canonical_id": "u", "timestamp": at(0), "received_at": at(0), "x": "known"},
    ]
    schema = {"timestamp": pa.timestamp("us", tz="UTC")}
    assert latest_traits(frame(rows, schema)).loc["u", "x"] == "known"


def test_chronological_order():
    rows = [
        {"id": "b", "timestamp": at(1), "received_at": at(0)},
        {"id": "a", "timestamp": at(1), "received_at": at(0)},
        {"id": "c", "timestamp": at(0), "received_at": at(5)},
    ]
    assert chronological(frame(rows)).tolist() == [2, 1, 0]


def test_rows_tied_on_every_key_stay_in_their_order():
    rows = [{"timestamp": at(t), "received_at": at(0)} for t in (3, 1, 3, 1, 3, 0, 1, 3)]
    assert chronological(frame(rows)).tolist() == [5, 1, 3, 6, 0, 2, 4, 7]
    ids = [{"id": i, "timestamp": at(0)} for i in ("b", "a", "b", "a")]
    assert chronological(frame(ids)).tolist() == [1, 3, 0, 2]


def test_integers_stay_integers_and_nan_counts_as_null():
    rows = [
        {"id": "1", "canonical_id": "u", "timestamp": at(0), "n": 3, "f": 1.5, "b": True},
        {"id": "2", "canonical_id": "u", "timestamp": at(1), "n": None, "f": float("nan")},
    ]
    schema = {"n": pa.int64(), "f": pa.float64(), "b": pa.bool_()}
    latest = latest_traits(frame(rows, schema))
    assert latest.loc["u", "n"] == 3 and latest["n"].dtype == pd.ArrowDtype(pa.int64())
    assert latest.loc["u", "f"] == 1.5
    assert latest["b"].dtype == pd.ArrowDtype(pa.bool_())


def test_rows_without_a_user_are_left_out_and_segment_columns_not_carried():
    rows = [
        {"id": "1", "canonical_id": None, "timestamp": at(0), "plan": "x", "context_ip": "1"},
        {"id": "2", "canonical_id": "", "timestamp": at(0), "plan": "y"},
        {
            "id": "3",
            "canonical_id": "u",
            "timestamp": at(0),
            "plan": "z",
            "context_timezone": "UTC",
        },
    ]
    latest = latest_traits(frame(rows))
    assert latest.index.tolist() == ["u"]
    assert latest.index.name == "canonical_id"
    assert list(latest.columns) == ["plan", "context_timezone"]


def test_columns_can_be_named():
    rows = [{"id": "1", "canonical_id": "u", "timestamp": at(0), "context_ip": "1.2.3.4"}]
    latest = latest_traits(frame(rows), columns=["context_ip"])
    assert latest.loc["u", "context_ip"] == "1.2.3.4"


def test_object_columns_of_mixed_values_are_kept_as_they_are():
    identifies = pd.DataFrame(
        {
            "id": ["1", "2"],
            "canonical_id": ["u", "u"],
            "timestamp": [at(0), at(1)],
            "mixed": pd.Series([1, None], dtype=object),
            "other": pd.Series(["a", 2], dtype=object),
        }
    )
    latest = latest_traits(identifies)
    assert latest.loc["u", "mixed"] == 1
    assert latest.loc["u", "other"] == 2


def test_device_platforms_case_insensitive_and_inferred():
    rows = [
        {"context_device_type": "iOS", "context_library_name": None},
        {"context_device_type": " ANDROID ", "context_library_name": "analytics-ios"},
        {"context_device_type": None, "context_library_name": "analytics-ios"},
        {"context_device_type": None, "context_library_name": "Analytics-Android"},
        {"context_device_type": "web", "context_library_name": "analytics-ios"},
        {"context_device_type": None, "context_library_name": None},
    ]
    platforms = device_platforms(frame(rows)).tolist()
    assert platforms[:4] == ["apns", "fcm", "apns", "fcm"]
    assert pd.isna(platforms[4]) and pd.isna(platforms[5])


def test_device_tokens_per_user_newest_first():
    rows = [
        {"id": "1", "canonical_id": "u", "timestamp": at(0), "context_device_type": "ios",
         "context_device_token": "a"},
        {"id": "2", "canonical_id": "u", "timestamp": at(2), "context_device_type": "ios",
         "context_device_token": "b"},
        {"id": "3", "canonical_id": "u", "timestamp": at(1), "context_device_type": "android",
         "context_device_token": "c"},
        {"id": "4", "canonical_id": "v", "timestamp": at(0), "context_device_type": "ios",
         "context_device_token": "a"},
        {"id": "5", "canonical_id": "w", "timestamp": at(0), "context_device_type": "ios",
         "context_device_token": None},
    ]  # fmt: skip
    tokens = device_tokens(frame(rows))
    assert tokens.loc["u", "apns"] == ["b", "a"]
    assert tokens.loc["u", "fcm"] == ["c"]
    assert tokens.loc["v", "apns"] == ["a"] and tokens.loc["v", "fcm"] is pd.NA  # Arrow null
    assert "w" not in tokens.index


def test_device_tokens_without_token_column():
    tokens = device_tokens(frame([{"id": "1", "canonical_id": "u", "timestamp": at(0)}]))
    assert tokens.empty and list(tokens.columns) == ["apns", "fcm"]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0, 1, 2]),
            st.sampled_from([0, 1]),
            st.one_of(st.none(), st.sampled_from(["a", "b", "é", "🎉"])),
        ),
        max_size=30,
    )
)
def test_chronological_is_a_stable_sort_by_time_then_id(keys) -> None:
    """The order Python's stable sort gives: timestamp, received_at, id (missing first),
    rows equal on all three in their own order."""
    rows = [{"id": i, "timestamp": at(t), "received_at": at(r)} for t, r, i in keys]
    expected = sorted(range(len(keys)), key=lambda p: (keys[p][0], keys[p][1], keys[p][2] or ""))
    expected = sorted(expected, key=lambda p: (keys[p][0], keys[p][1], keys[p][2] is not None))
    got = chronological(frame(rows, {"id": pa.string()})).tolist() if rows else []
    assert got == expected


@settings(max_examples=100, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["u", "v", "w", None]),
            st.integers(0, 3),
            st.sampled_from(["ios", "android", None]),
            st.one_of(st.none(), st.sampled_from(["a", "b", " c ", ""])),
            st.one_of(st.none(), st.sampled_from(["x", "y"])),
        ),
        min_size=1,
        max_size=30,
    )
)
def test_a_rank_given_by_the_caller_changes_nothing(rows) -> None:
    """With the rank the pipeline computes once, or without it, both give what the rules
    say, worked out here one row at a time: rows in (timestamp, id) order, the latest
    non-null plan per user, each distinct trimmed token newest first per platform."""
    data = frame(
        [
            {
                "id": str(i),
                "canonical_id": user,
                "timestamp": at(minute),
                "context_device_type": kind,
                "context_device_token": token,
                "plan": plan,
            }
            for i, (user, minute, kind, token, plan) in enumerate(rows)
        ],
        {
            "canonical_id": pa.string(),
            "context_device_type": pa.string(),
            "context_device_token": pa.string(),
            "plan": pa.string(),
        },
    )
    order = sorted(range(len(rows)), key=lambda i: (rows[i][1], str(i)))
    plans: dict[str, str | None] = {}
    tokens: dict[str, dict[str, list[str]]] = {}
    for i in order:
        user, _, kind, token, plan = rows[i]
        if user is None:
            continue
        if plan is not None or user not in plans:
            plans[user] = plan
    for i in reversed(order):  # newest first
        user, _, kind, token, _ = rows[i]
        platform = {"ios": "apns", "android": "fcm"}.get(kind or "")
        cleaned = (token or "").strip()
        if user is None or platform is None or not cleaned:
            continue
        listed = tokens.setdefault(user, {}).setdefault(platform, [])
        if cleaned not in listed:
            listed.append(cleaned)

    _, rank = chronological_rank(data)
    for ranked in (rank, None):
        latest = latest_traits(data, rank=ranked)
        assert sorted(latest.index) == sorted(plans)
        got_plans = {u: (None if pd.isna(p) else p) for u, p in latest["plan"].items()}
        assert got_plans == plans
        got = device_tokens(data, rank=ranked)
        got_tokens = {
            user: {
                p: list(got.loc[user, p]) for p in ("apns", "fcm") if got.loc[user, p] is not pd.NA
            }
            for user in got.index
        }
        assert got_tokens == tokens
