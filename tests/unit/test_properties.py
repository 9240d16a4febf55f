"""Properties of the transforms for any input frame (hypothesis).

- every payload is valid against the Connect API's schema (connect-api.md), checked by a
  small validator written here from the spec, not from the sandbox's code;
- the same rows give the same payloads (run twice, and with the rows shuffled);
- no trait value is sent twice: a trait that became a top-level field is not also an
  attribute (`name` is the one documented exception: it stays in attributes while first
  and last names are split from it).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import available_timezones

import orjson
import pandas as pd
import pyarrow as pa
from connect_sync.transforms.events import property_objects, track_payloads
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import identify_payloads
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ZONES = frozenset(available_timezones())
IDENTIFY_KEYS = {
    "user_id",
    "previous_id",
    "first_name",
    "last_name",
    "email",
    "phone_number",
    "timezone",
    "apns",
    "gcm",
    "fcm",
    "attributes",
    "group_id",
    "group_attributes",
}
IDENTIFY_STRINGS = ("previous_id", "first_name", "last_name", "email", "phone_number", "group_id")
TRACK_KEYS = {"user_id", "event", "properties", "timestamp"}
FIELD_SOURCES = {"first_name", "last_name", "email", "phone", "user_id", "id"}
T0 = datetime(2024, 5, 1, tzinfo=UTC)
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- a validator written from connect-api.md ------------------------------------------------


def _json_value(value: Any) -> None:
    """A value Connect can store: JSON, no null/NaN/inf/empty left in."""
    assert value is not None and value != ""
    if isinstance(value, float):
        assert math.isfinite(value)
    elif isinstance(value, dict):
        assert value
        for k, v in value.items():
            assert isinstance(k, str) and k
            _json_value(v)
    elif isinstance(value, list):
        for v in value:
            _json_value(v)
    else:
        assert isinstance(value, str | int | bool)


def valid_identify(item: dict[str, Any]) -> None:
    assert set(item) <= IDENTIFY_KEYS, set(item) - IDENTIFY_KEYS
    user_id = item["user_id"]
    assert isinstance(user_id, str) and user_id  # always a string here
    for key in IDENTIFY_STRINGS:
        if key in item:
            assert isinstance(item[key], str) and item[key].strip() == item[key] != ""
    if "timezone" in item:
        assert item["timezone"] in ZONES
    for key in ("apns", "gcm", "fcm"):
        if key in item:
            tokens = item[key]
            assert isinstance(tokens, list) and tokens
            assert all(isinstance(t, str) and t for t in tokens)
            assert len(set(tokens)) == len(tokens)
    if "attributes" in item:
        assert isinstance(item["attributes"], dict)
        _json_value(item["attributes"])
    assert orjson.loads(orjson.dumps(item)) == item  # serializes, and round-trips


def valid_track(item: dict[str, Any]) -> None:
    assert set(item) <= TRACK_KEYS and {"user_id", "event"} <= set(item)
    assert isinstance(item["user_id"], str) and item["user_id"].strip()
    assert isinstance(item["event"], str) and 0 < len(item["event"]) <= 200
    assert item["event"].strip()
    if "properties" in item:
        assert isinstance(item["properties"], dict)
        _json_value(item["properties"])
    if "timestamp" in item:
        stamp = item["timestamp"]
        assert isinstance(stamp, int | float) and not isinstance(stamp, bool)
    assert orjson.loads(orjson.dumps(item)) == item


# -- input frames -------------------------------------------------------------------------

WORDS = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12
) | st.sampled_from(["John Doe", "  Mary Ann Smith ", "🎉 Party", "Zoë", "", " ", "\t"])
USERS = st.sampled_from(
    ["u1", "u2", "ada@example.com", "anon-7f3e", "12345", "Zoë", " ", "", "a b"]
)
EMAILS = st.sampled_from(["ada@example.com", " b@c.io ", "nope", "a@b", ""]) | WORDS
PHONES = st.sampled_from(["+14155550132", "(415) 555-0132", "55555", "+44 20 7946 0018"]) | (
    st.text("+0123456789 ()-", max_size=16)
)
TIMEZONES = st.sampled_from(["America/Detroit", "Europe/Berlin", "UTC", "EST5", "mars", " "])
DEVICE_TYPES = st.sampled_from(["ios", "iOS", " Android", "android", "web", "", None])
LIBRARIES = st.sampled_from(["analytics-ios", "analytics-android", "analytics.js", None])
TOKENS = st.sampled_from(["tok-a", "tok-b", " tok-a ", "", None]) | WORDS
COLUMNS: dict[str, tuple[pa.DataType, st.SearchStrategy]] = {
    "name": (pa.string(), WORDS),
    "first_name": (pa.string(), WORDS),
    "last_name": (pa.string(), WORDS),
    "email": (pa.string(), EMAILS),
    "phone": (pa.string(), PHONES),
    "timezone": (pa.string(), TIMEZONES),
    "context_timezone": (pa.string(), TIMEZONES),
    "context_device_type": (pa.string(), DEVICE_TYPES),
    "context_device_token": (pa.string(), TOKENS),
    "context_library_name": (pa.string(), LIBRARIES),
    "plan": (pa.string(), WORDS),
    "logins": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "score": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "vip": (pa.bool_(), st.booleans()),
    "created_at": (
        pa.timestamp("us", tz="UTC"),
        st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)).map(
            lambda d: d.replace(tzinfo=UTC)
        ),
    ),
}


@st.composite
def identify_frames(draw) -> pd.DataFrame:
    n = draw(st.integers(0, 10))
    columns = draw(st.lists(st.sampled_from(sorted(COLUMNS)), unique=True, max_size=len(COLUMNS)))
    users = [draw(USERS) for _ in range(n)]
    data: dict[str, pa.Array] = {
        "id": pa.array([f"m{i:03d}" for i in range(n)]),
        "canonical_id": pa.array(users, pa.string()),
        "user_id": pa.array(users, pa.string()),
        "timestamp": pa.array(
            [T0 + timedelta(minutes=draw(st.integers(0, 3))) for _ in range(n)],
            pa.timestamp("us", tz="UTC"),
        ),
        "received_at": pa.array(
            [T0 + timedelta(minutes=draw(st.integers(0, 3))) for _ in range(n)],
            pa.timestamp("us", tz="UTC"),
        ),
    }
    for name in columns:
        kind, values = COLUMNS[name]
        data[name] = pa.array([draw(st.none() | values) for _ in range(n)], kind)
    return pa.table(data).to_pandas(types_mapper=pd.ArrowDtype)


def build(identifies: pd.DataFrame, region: str | None) -> tuple[list[str], list[dict]]:
    built = identify_payloads(latest_traits(identifies), device_tokens(identifies), region)
    assert all(isinstance(p, bytes) for p in built.payloads)
    return built.user_ids, [orjson.loads(p) for p in built.payloads]


REGIONS = st.sampled_from([None, "US", "GB"])


@SETTINGS
@given(identify_frames(), REGIONS)
def test_identify_payloads_are_valid_connect_calls(identifies, region):
    user_ids, payloads = build(identifies, region)
    for payload in payloads:
        valid_identify(payload)
    known = {u for u in identifies["canonical_id"].dropna() if u != ""}
    assert sorted(user_ids) == sorted(known) == [p["user_id"] for p in payloads]


@SETTINGS
@given(identify_frames(), REGIONS, st.randoms(use_true_random=False))
def test_same_rows_give_the_same_payloads(identifies, region, random):
    first = build(identifies, region)
    assert build(identifies, region) == first
    order = list(range(len(identifies)))
    random.shuffle(order)
    assert build(identifies.iloc[order].reset_index(drop=True), region) == first


@SETTINGS
@given(identify_frames(), REGIONS)
def test_no_trait_is_sent_in_two_fields(identifies, region):
    _, payloads = build(identifies, region)
    for payload in payloads:
        attributes = payload.get("attributes", {})
        assert not FIELD_SOURCES & set(attributes)
        if "timezone" in payload:  # from the context or the trait: not again as an attribute
            assert "timezone" not in attributes


# -- tracks -------------------------------------------------------------------------------

NAMES = st.text(max_size=8) | st.text(min_size=195, max_size=205) | st.sampled_from(["Signed Up"])


@st.composite
def track_frames(draw) -> tuple[pd.DataFrame, pd.DataFrame]:
    n = draw(st.integers(0, 8))
    ids = [f"m{i}" for i in range(n)]
    tracks = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "canonical_id": pa.array([draw(st.none() | USERS) for _ in ids], pa.string()),
            "event": pa.array([draw(st.none() | st.just("signed_up")) for _ in ids], pa.string()),
            "event_text": pa.array([draw(st.none() | NAMES) for _ in ids], pa.string()),
            "timestamp": pa.array(
                [draw(st.none() | st.just(T0 + timedelta(seconds=i / 8))) for i in range(n)],
                pa.timestamp("us", tz="UTC"),
            ),
        }
    )
    props = pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "plan": pa.array([draw(st.none() | WORDS) for _ in ids], pa.string()),
            "seats": pa.array([draw(st.none() | st.integers(0, 10)) for _ in ids], pa.int64()),
            "price": pa.array([draw(st.none() | st.floats()) for _ in ids], pa.float64()),
            "context_ip": pa.array(["10.0.0.1"] * n, pa.string()),
        }
    )
    mapper = pd.ArrowDtype
    return tracks.to_pandas(types_mapper=mapper), props.to_pandas(types_mapper=mapper)


@SETTINGS
@given(track_frames())
def test_track_payloads_are_valid_and_every_row_is_accounted_for(frames):
    tracks, table = frames
    built = track_payloads(tracks, property_objects(table))
    assert all(isinstance(p, bytes) for p in built.payloads)
    for payload in map(orjson.loads, built.payloads):
        valid_track(payload)
        assert "context_ip" not in payload.get("properties", {})
    assert sorted(built.message_ids + built.rejected["message_id"].tolist()) == sorted(
        tracks["id"].tolist()
    )
    assert set(built.rejected["reason"]) <= {
        "missing_user_id",
        "event_name_too_long",
        "missing_event_name",
    }
    assert sum(built.quality.values()) == len(built.rejected)
    again = track_payloads(tracks, property_objects(table))
    assert again.payloads == built.payloads
