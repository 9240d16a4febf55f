"""Payloads as JSON bytes built column-wise: the same objects the per-row dict path built.

The reference here is the earlier path, kept in the tests only: `values.records` builds one
dict per row from the same fields, and the change-detection fingerprint of a dict is
`orjson.dumps(record, option=OPT_SORT_KEYS)`. The bytes must decode to that dict and, for
ordinary values, be exactly those bytes (so fingerprints of earlier runs stay valid).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pytest
from connect_sync.transforms.changes import fingerprint
from connect_sync.transforms.events import property_fields, property_objects, track_payloads
from connect_sync.transforms.json_objects import json_objects, json_records, unix_seconds_json
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import _fields, attribute_fields, identify_payloads
from connect_sync.transforms.values import Field, json_ready, missing_mask, records, unix_seconds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.unit.test_properties import REGIONS, identify_frames, track_frames

UNITS = ["s", "ms", "us", "ns"]
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def sorted_json(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


# -- the reference: one dict per row (the earlier path) ------------------------------------


def reference_identify(latest: pd.DataFrame, tokens: pd.DataFrame, region: str | None) -> list:
    """Identify payload dicts built per row by `records`, from the same fields."""
    n = len(latest)
    built = _fields(latest, tokens, region)
    attribute_list = attribute_fields(latest, built.timezone_taken)
    no_attributes = np.ones(n, dtype=bool)
    for f in attribute_list:
        no_attributes &= f.missing
    top = [Field("user_id", built.user_ids.to_pylist())]
    top += [Field(k, v) for k, v in built.columns.items()]
    top += [Field(k, v.to_pylist(), missing_mask(v)) for k, v in built.tokens.items()]
    top.append(Field("attributes", records(attribute_list, n), no_attributes))
    return records(top, n)


def reference_tracks(tracks: pd.DataFrame, table: pd.DataFrame, message_ids: list[str]) -> list:
    """Track payload dicts built per row by `records` for the kept message ids."""
    table = table.drop_duplicates("id", keep="last")
    fields = property_fields(table)
    props = dict(zip(table["id"].astype(str), records(fields, len(table)), strict=True))
    rows = tracks.set_index(tracks["id"].astype(str)).loc[message_ids]
    stamps, missing = unix_seconds(pa.array(rows["timestamp"]))
    out = []
    for at, mid in enumerate(message_ids):
        event = rows["event_text"].iloc[at]
        if pd.isna(event) or not str(event).strip():
            event = rows["event"].iloc[at]
        record = {"user_id": rows["canonical_id"].iloc[at], "event": event}
        if props.get(mid):
            record["properties"] = props[mid]
        if not missing[at]:
            record["timestamp"] = stamps[at]
        out.append(record)
    return out


# -- properties -----------------------------------------------------------------------------


@SETTINGS
@given(identify_frames(), REGIONS)
def test_identify_bytes_are_the_records_payloads_and_their_fingerprints(identifies, region):
    latest, tokens = latest_traits(identifies), device_tokens(identifies)
    built = identify_payloads(latest, tokens, region)
    expected = reference_identify(latest, tokens, region)
    assert [orjson.loads(p) for p in built.payloads] == expected
    assert built.payloads == [sorted_json(r) for r in expected]
    assert [fingerprint(p) for p in built.payloads] == [fingerprint(r) for r in expected]


@SETTINGS
@given(track_frames())
def test_track_bytes_are_the_records_payloads_and_their_fingerprints(frames):
    tracks, table = frames
    built = track_payloads(tracks, property_objects(table))
    expected = reference_tracks(tracks, table, built.message_ids)
    assert [orjson.loads(p) for p in built.payloads] == expected
    assert built.payloads == [sorted_json(r) for r in expected]


INT64 = st.integers(-(2**63), 2**63 - 1)
VALUES: dict[str, tuple[pa.DataType, st.SearchStrategy]] = {
    "int": (pa.int64(), INT64),
    "small": (pa.int8(), st.integers(-128, 127)),
    "uint": (pa.uint64(), st.integers(0, 2**64 - 1)),
    "float": (pa.float64(), st.floats()),
    "float32": (pa.float32(), st.floats(width=32)),
    "bool": (pa.bool_(), st.booleans()),
    "text": (pa.string(), st.text()),
    "stamp": (
        pa.timestamp("ms"),
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    ),
    "tags": (pa.list_(pa.string()), st.lists(st.text(max_size=3), max_size=3)),
    "nested": (
        pa.struct([("b", pa.int64()), ("a", pa.string())]),
        st.fixed_dictionaries({"b": st.none() | INT64, "a": st.none() | st.text()}),
    ),
}


@st.composite
def typed_fields(draw) -> tuple[list[Field], int]:
    n = draw(st.integers(0, 6))
    names = draw(st.lists(st.sampled_from(sorted(VALUES)), unique=True))
    fields = []
    for name in names:
        kind, values = VALUES[name]
        key = draw(st.sampled_from([name, f"{name}é", f'"{name}\n', f"Z{name}"]))
        array = pa.array([draw(st.none() | values) for _ in range(n)], kind)
        fields.append(Field(key, json_ready(array)))
    if draw(st.booleans()):  # a mixed Python column with its own missing mask
        mixed = [draw(INT64 | st.text() | st.booleans()) for _ in range(n)]
        missing = np.array([draw(st.booleans()) for _ in range(n)], dtype=bool)
        fields.append(Field("mixed", mixed, missing))
    return fields, n


@settings(max_examples=300, deadline=None)
@given(typed_fields())
def test_json_records_equal_records_for_every_type(case):
    fields, n = case
    expected = records(fields, n)
    out = json_records(fields, n)
    assert [orjson.loads(p) for p in out] == expected
    assert out == [sorted_json(r) for r in expected]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=30))
def test_floats_are_written_as_orjson_writes_them(values):
    out = json_records([Field("f", pa.array(values, pa.float64()))], len(values))
    assert out == [orjson.dumps({"f": v}) for v in values]


def test_empty_objects_are_null_and_empty_records_are_braces():
    fields = [Field("a", pa.array([1, None])), Field("b", pa.array([None, None], pa.string()))]
    assert json_objects(fields, 2).to_list() == ['{"a":1}', None]
    assert json_records(fields, 2) == [b'{"a":1}', b"{}"]
    assert json_records([], 2) == [b"{}", b"{}"]
    assert json_records([Field("a", pa.array([], pa.int64()))], 0) == []


def test_encoded_fields_are_embedded_as_they_are():
    inner = json_objects([Field("y", pa.array([1, None]))], 2)
    out = json_records([Field("x", inner, encoded=True), Field("a", pa.array([True, False]))], 2)
    assert out == [b'{"a":true,"x":{"y":1}}', b'{"a":false}']


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(-(10**12), 10**12) | st.none(), max_size=20), st.sampled_from(UNITS))
def test_unix_seconds_json_equal_unix_seconds_at_any_instant(micros, unit):
    """Fractional seconds as Python divides them (1790825491.818, not ...8179998)."""
    stamps = pa.array(micros, pa.timestamp("us", tz="UTC"))
    array = stamps.cast(pa.timestamp(unit, tz="UTC"), safe=False)
    seconds, missing = unix_seconds(array)
    pairs = zip(seconds, missing, strict=True)
    expected = [None if m else orjson.dumps(s).decode() for s, m in pairs]
    assert unix_seconds_json(array).to_list() == expected


def test_unix_seconds_json_of_a_millisecond_stamp():
    array = pa.array([1_790_825_491_818], pa.timestamp("ms", tz="UTC"))
    assert unix_seconds_json(array).to_list() == ["1790825491.818"]


@pytest.mark.parametrize("unit", UNITS)
def test_unix_seconds_json_equal_unix_seconds(unit):
    base = datetime(2024, 5, 1, tzinfo=UTC)
    values = [base, base + timedelta(milliseconds=250), None, datetime(1969, 12, 31, tzinfo=UTC)]
    array = pa.array(values, pa.timestamp(unit, tz="UTC"))
    seconds, missing = unix_seconds(array)
    pairs = zip(seconds, missing, strict=True)
    expected = [None if m else orjson.dumps(s).decode() for s, m in pairs]
    assert unix_seconds_json(array).to_list() == expected


def test_text_is_escaped_as_orjson_escapes_it_only_where_needed():
    values = ["plain", 'a "quote"', "back\\slash", "tab\tnew\nline\x00\x1f", "é 🎉 \u2028\x7f"]
    escaped = json_records([Field("s", pa.array(values))], len(values))
    assert escaped == [orjson.dumps({"s": v}) for v in values]
    plain = json_records([Field("s", pa.array(["a", None, "b"]))], 3)
    assert plain == [b'{"s":"a"}', b"{}", b'{"s":"b"}']
