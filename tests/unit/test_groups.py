"""Group calls as group identifies: mapping.md, Pages, screens and groups."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
from connect_sync.transforms.groups import (
    GROUP_KEY_SEPARATOR,
    group_payloads,
    user_aligned_chunks,
    with_current_group,
)
from connect_sync.transforms.users import identify_payloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def frame(rows: list[dict[str, Any]], schema=None) -> pd.DataFrame:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arrays = {k: pa.array([r.get(k) for r in rows], (schema or {}).get(k)) for k in keys}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


_ids = iter(range(10**9))


def group(
    user: str | None = "u1", group_id: str | None = "g1", minutes: float = 0, **traits: Any
) -> dict[str, Any]:
    """A `groups` row as Segment writes it, plus the job's `canonical_id`."""
    ts = at(minutes)
    return {
        "id": f"grp-{next(_ids):04d}",
        "anonymous_id": "anon-1",
        "user_id": user,
        "canonical_id": user,
        "group_id": group_id,
        "received_at": ts,
        "sent_at": ts,
        "original_timestamp": ts,
        "timestamp": ts,
        "uuid_ts": ts,
        "context_ip": "10.0.0.1",
        "context_library_name": "analytics.js",
        **traits,
    }


def decoded(payloads: list[bytes]) -> list[dict[str, Any]]:
    return [orjson.loads(p) for p in payloads]


def test_a_group_identify():
    rows = frame([group(name="Acme", industry="Retail", employees=42, plan="business")])
    built = group_payloads(rows)
    assert built.keys == [f"u1{GROUP_KEY_SEPARATOR}g1"]
    assert decoded(built.payloads) == [
        {
            "user_id": "u1",
            "group_id": "g1",
            "group_attributes": {
                "name": "Acme",
                "industry": "Retail",
                "employees": 42,
                "plan": "business",
            },
        }
    ]
    assert built.rejected.empty and not built.quality


def test_latest_non_null_per_trait_over_all_rows_of_the_user_and_group():
    rows = frame(
        [
            group(minutes=3, plan="enterprise", employees=None, industry=None),
            group(minutes=1, plan="free", employees=10, industry="Retail"),
            group(minutes=2, plan="startup", employees=None, industry="Media"),
        ],
        {"employees": pa.int64()},
    )
    (payload,) = decoded(group_payloads(rows).payloads)
    # the latest call's plan; the traits it did not send, from the latest call that did
    assert payload["group_attributes"] == {
        "plan": "enterprise",
        "employees": 10,
        "industry": "Media",
    }


def test_ties_go_to_received_at_then_id():
    rows = [
        group(plan="b") | {"id": "b", "received_at": at(1)},
        group(plan="a") | {"id": "a", "received_at": at(1)},
        group(plan="c") | {"id": "c", "received_at": at(0)},
    ]
    (payload,) = decoded(group_payloads(frame(rows)).payloads)
    assert payload["group_attributes"] == {"plan": "b"}


def test_a_user_in_two_groups_and_two_users_in_one_group():
    rows = frame(
        [
            group("u2", "g1", minutes=0, plan="free"),
            group("u1", "g1", minutes=1, plan="business"),
            group("u1", "g2", minutes=2, plan="pro"),
        ]
    )
    built = group_payloads(rows)
    sep = GROUP_KEY_SEPARATOR
    assert built.keys == [f"u1{sep}g1", f"u1{sep}g2", f"u2{sep}g1"]
    assert decoded(built.payloads) == [
        {"user_id": "u1", "group_id": "g1", "group_attributes": {"plan": "business"}},
        {"user_id": "u1", "group_id": "g2", "group_attributes": {"plan": "pro"}},
        {"user_id": "u2", "group_id": "g1", "group_attributes": {"plan": "free"}},
    ]


def test_a_user_s_groups_go_in_the_order_of_their_latest_call_the_current_one_last():
    """Connect keeps the group of the last identify that named one: the group called last
    (here g1, called again after g2 and g3) is sent last, whatever the ids' order."""
    rows = frame(
        [
            group("u1", "g1", minutes=0, plan="free"),
            group("u1", "g3", minutes=1),
            group("u1", "g2", minutes=2),
            group("u1", "g1", minutes=3, plan="pro"),
            group("u0", "g9", minutes=4),
        ]
    )
    sep = GROUP_KEY_SEPARATOR
    assert group_payloads(rows).keys == [f"u0{sep}g9", f"u1{sep}g3", f"u1{sep}g2", f"u1{sep}g1"]


def test_the_current_group_follows_any_other_group_of_its_user_that_is_sent():
    sep = GROUP_KEY_SEPARATOR
    keys = [f"u1{sep}g2", f"u1{sep}g1", f"u2{sep}g1", f"u3{sep}g1", f"u3{sep}g3"]
    # u1's older group changed: its current group g1 goes again after it
    assert with_current_group(keys, [True, False, False, False, False]) == [
        True, True, False, False, False,
    ]  # fmt: skip
    # nothing of u2 or u3 changed but u3's current group: nothing more to send
    assert with_current_group(keys, [False, False, False, False, True]) == [
        False, False, False, False, True,
    ]  # fmt: skip
    assert with_current_group([], []) == []


def test_chunks_never_split_a_user_s_groups():
    sep = GROUP_KEY_SEPARATOR
    keys = [f"u1{sep}g2", f"u1{sep}g1", f"u2{sep}g1", f"u3{sep}g1", f"u3{sep}g3", f"u4{sep}g"]
    assert user_aligned_chunks(keys, 1) == [(0, 2), (2, 3), (3, 5), (5, 6)]
    assert user_aligned_chunks(keys, 3) == [(0, 3), (3, 6)]
    assert user_aligned_chunks(keys, 100) == [(0, 6)]
    assert user_aligned_chunks([], 100) == [(0, 0)]


def test_rows_of_one_canonical_user_merge():
    # an anonymous group call before sign-up, resolved by the caller to the user
    rows = frame(
        [
            group(None, minutes=0, plan="free", industry="Retail") | {"canonical_id": "u1"},
            group("u1", minutes=1, plan="pro"),
        ]
    )
    assert decoded(group_payloads(rows).payloads) == [
        {
            "user_id": "u1",
            "group_id": "g1",
            "group_attributes": {"plan": "pro", "industry": "Retail"},
        }
    ]


def test_never_id_or_group_id_or_segment_or_context_columns_in_the_attributes():
    rows = frame([group(plan="pro") | {"previous_id": "x", "event": "e", "loaded_at": T0}])
    (payload,) = decoded(group_payloads(rows).payloads)
    assert payload["group_attributes"] == {"plan": "pro"}


def test_values_keep_their_types_and_empty_ones_are_left_out():
    rows = frame(
        [
            group(
                minutes=0,
                employees=42,
                public=False,
                revenue=1250.5,
                founded=at(0),
                plan="",
                note=None,
            )
        ],
        {"note": pa.string()},
    )
    (payload,) = decoded(group_payloads(rows).payloads)
    assert payload["group_attributes"] == {
        "employees": 42,
        "public": False,
        "revenue": 1250.5,
        "founded": "2024-05-01T12:00:00Z",
    }


def test_integers_stay_integers_with_nulls_in_the_column():
    rows = frame([group("u1", employees=7), group("u2", employees=None)], {"employees": pa.int64()})
    first, second = decoded(group_payloads(rows).payloads)
    assert first["group_attributes"] == {"employees": 7}
    assert type(first["group_attributes"]["employees"]) is int
    assert "group_attributes" not in second  # no trait left: no group_attributes at all


def test_a_numeric_group_id_is_sent_as_text():
    rows = frame([group(group_id=None) | {"group_id": 1234}])
    assert decoded(group_payloads(rows).payloads)[0]["group_id"] == "1234"


def test_rows_without_a_group_or_a_user_are_rejected():
    rows = frame(
        [
            group("u1", None, plan="free") | {"id": "m1"},
            group("u1", "  ", plan="free") | {"id": "m2"},
            group(None, "g1", plan="free") | {"id": "m3"},
            group(None, None) | {"id": "m4"},
            group("u1", "g1", plan="pro") | {"id": "m5"},
        ],
        {"group_id": pa.string(), "canonical_id": pa.string()},
    )
    built = group_payloads(rows)
    assert decoded(built.payloads) == [
        {"user_id": "u1", "group_id": "g1", "group_attributes": {"plan": "pro"}}
    ]
    rejected = built.rejected
    assert rejected.columns.tolist() == ["message_id", "user_id", "reason"]
    assert rejected["message_id"].tolist() == ["m1", "m2", "m3", "m4"]
    assert rejected["reason"].tolist() == [
        "missing_group_id",
        "missing_group_id",
        "missing_user_id",
        "missing_user_id",
    ]
    assert built.quality == {"missing_group_id": 2, "missing_user_id": 2}


def test_same_json_style_as_identify_payloads():
    """Byte for byte what the identify transform writes for the same values."""
    rows = frame([group(name='Zoë & Co "quoted"', employees=3, ratio=0.1, active=True)])
    (payload,) = group_payloads(rows).payloads
    attributes = {"name": 'Zoë & Co "quoted"', "employees": 3, "ratio": 0.1, "active": True}
    expected = orjson.dumps(
        {"group_attributes": attributes, "group_id": "g1", "user_id": "u1"},
        option=orjson.OPT_SORT_KEYS,
    )
    assert payload == expected
    latest = frame([{"name": 'Zoë & Co "quoted"', "employees": 3, "ratio": 0.1, "active": True}])
    latest.index = pd.Index(["u1"])
    identify = identify_payloads(latest, pd.DataFrame())
    assert orjson.loads(identify.payloads[0])["attributes"] == attributes


def test_no_rows():
    built = group_payloads(frame([group(plan="x")]).iloc[:0])
    assert built.keys == [] and built.payloads == [] and built.rejected.empty


# -- against a naive per-row reference ------------------------------------------------------

USERS = st.sampled_from(["u1", "u2", "u3", None])
GROUPS = st.sampled_from(["g1", "g2", "", None])


@st.composite
def group_frames(draw) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    n = draw(st.integers(1, 14))
    rows = []
    for i in range(n):
        rows.append(
            {
                "id": f"m{draw(st.integers(0, 5))}{i:02d}",
                "canonical_id": draw(USERS),
                "group_id": draw(GROUPS),
                "timestamp": at(draw(st.integers(0, 3))),
                "received_at": at(draw(st.integers(0, 2))),
                "plan": draw(st.one_of(st.none(), st.sampled_from(["free", "pro", ""]))),
                "employees": draw(st.one_of(st.none(), st.integers(-5, 10**12))),
                "public": draw(st.one_of(st.none(), st.booleans())),
                "score": draw(
                    st.one_of(st.none(), st.just(math.nan), st.floats(-1e6, 1e6, width=32))
                ),
            }
        )
    schema = {
        "canonical_id": pa.string(),
        "group_id": pa.string(),
        "plan": pa.string(),
        "employees": pa.int64(),
        "public": pa.bool_(),
        "score": pa.float64(),
    }
    return frame(rows, schema), rows


def reference(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Row by row: per (user, group), each trait's latest non-null value (NaN counts as
    null) in (timestamp, received_at, id) order; empty values left out afterwards. Ordered
    by user, then by the key's latest call."""
    when = lambda r: (r["timestamp"], r["received_at"], r["id"])  # noqa: E731
    ordered = sorted(rows, key=when)
    out: dict[str, dict[str, Any]] = {}
    latest: dict[str, tuple] = {}
    for r in ordered:
        if not r["canonical_id"] or not r["group_id"]:
            continue
        key = f"{r['canonical_id']}{GROUP_KEY_SEPARATOR}{r['group_id']}"
        latest[key] = when(r)
        payload = out.setdefault(
            key, {"user_id": r["canonical_id"], "group_id": r["group_id"], "traits": {}}
        )
        for trait in ("plan", "employees", "public", "score"):
            value = r[trait]
            if value is not None and not (isinstance(value, float) and math.isnan(value)):
                payload["traits"][trait] = value
    for payload in out.values():
        traits = {k: v for k, v in payload.pop("traits").items() if v != ""}
        if traits:
            payload["group_attributes"] = traits
    return dict(sorted(out.items(), key=lambda kv: (kv[1]["user_id"], latest[kv[0]])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(group_frames())
def test_group_payloads_equal_a_naive_per_row_reference(drawn):
    table, rows = drawn
    built = group_payloads(table)
    expected = reference(rows)
    assert built.keys == list(expected)
    assert decoded(built.payloads) == list(expected.values())
    bad = [r["id"] for r in rows if not r["canonical_id"] or not r["group_id"]]
    assert built.rejected["message_id"].tolist() == bad
