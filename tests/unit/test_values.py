"""Typed JSON-ready values and many records at once."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from connect_sync.transforms.values import (
    Field,
    iso_utc,
    json_ready,
    null_where,
    positions_in,
    python_values,
    records,
    to_python,
    unix_seconds,
    valid_mask,
)
from hypothesis import given, settings
from hypothesis import strategies as st


def test_iso_utc_formats_and_floors_to_the_second():
    values = [
        datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 0, 999999, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC),
        datetime(2000, 2, 29, 23, 59, 59, tzinfo=UTC),
        None,
    ]
    out = iso_utc(pa.array(values, pa.timestamp("us", tz="UTC"))).to_pylist()
    assert out == [
        "2024-05-01T12:00:00Z",
        "2024-05-01T12:00:00Z",
        "1969-12-31T23:59:59Z",
        "2000-02-29T23:59:59Z",
        None,
    ]


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)), max_size=20
    )
)
def test_iso_utc_matches_isoformat(values):
    expected = [v.replace(microsecond=0).isoformat() + "Z" for v in values]  # 4-digit years
    for unit in ("s", "ms", "us"):
        rounded = [v.replace(microsecond=0) if unit == "s" else v for v in values]
        if unit == "ms":
            rounded = [v.replace(microsecond=v.microsecond // 1000 * 1000) for v in values]
        assert iso_utc(pa.array(rounded, pa.timestamp(unit))).to_pylist() == expected


def test_iso_utc_of_other_zones_and_units():
    ns = pa.array([1_714_564_800_123_456_789], pa.timestamp("ns", tz="Asia/Tokyo"))
    assert iso_utc(ns).to_pylist() == ["2024-05-01T12:00:00Z"]


def test_unix_seconds_int_when_whole_else_float():
    values = [
        datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC),
        datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC),
        None,
    ]
    seconds, missing = unix_seconds(pa.array(values, pa.timestamp("ms", tz="UTC")))
    assert seconds[:2] == [1714564800, 1714564800.25]
    assert type(seconds[0]) is int and type(seconds[1]) is float
    assert missing.tolist() == [False, False, True]


def test_json_ready_types():
    assert json_ready(pa.array([1, None], pa.int32())).to_pylist() == [1, None]
    assert json_ready(pa.array([1.5, float("nan"), float("-inf")])).to_pylist() == [1.5, None, None]
    assert json_ready(pa.array(["a", "", None])).to_pylist() == ["a", None, None]
    assert json_ready(pa.array([date(2024, 5, 1)])).to_pylist() == ["2024-05-01"]
    assert json_ready(pa.array([b"abc"], pa.binary())).to_pylist() == ["YWJj"]  # base64
    assert json_ready(pa.array([True, None])).to_pylist() == [True, None]


def test_to_python_keeps_types_and_shares_repeated_strings():
    ints = to_python(pa.array([1, None, 3]))
    assert ints[0] == 1 and ints[2] == 3 and type(ints[2]) is int
    plans = pa.array(["free", "pro"] * 10_000)
    values = to_python(plans)
    assert values[:3] == ["free", "pro", "free"] and values[0] is values[2]


def test_python_values_of_series():
    series = pd.Series([1, None, 3], dtype="Int64")
    assert python_values(series) == [1, None, 3]
    stamps = pd.Series(pd.to_datetime(["2024-05-01 12:00:00.5", None], utc=True))
    assert python_values(stamps) == ["2024-05-01T12:00:00Z", None]
    mixed = pd.Series(["a", 1, None, "", float("nan")], dtype=object)
    assert python_values(mixed) == ["a", 1, None, None, None]


def test_records_leave_missing_keys_out_in_field_order():
    fields = [
        Field("a", pa.array([1, None, 3])),
        Field("b", ["x", "y", "z"], np.array([True, False, False])),
        Field("c", pa.array([None, None, None], pa.string())),
    ]
    out = records(fields, 3)
    assert out == [{"a": 1}, {"b": "y"}, {"a": 3, "b": "z"}]
    assert list(out[2]) == ["a", "b"]


def test_records_without_fields_or_rows():
    assert records([], 2) == [{}, {}]
    assert records([Field("a", pa.array([], pa.int64()))], 0) == []


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.one_of(st.none(), st.integers(-5, 5)), min_size=4, max_size=4)))
def test_records_equal_a_per_row_build(rows):
    keys = ["k0", "k1", "k2", "k3"]
    columns = list(zip(*rows, strict=True)) if rows else [[] for _ in keys]
    fields = [Field(k, pa.array(list(c), pa.int64())) for k, c in zip(keys, columns, strict=True)]
    expected = [{k: v for k, v in zip(keys, r, strict=True) if v is not None} for r in rows]
    assert records(fields, len(rows)) == expected


@pytest.mark.parametrize("unit", ["s", "ms", "us", "ns"])
def test_unix_seconds_units(unit):
    when = datetime(2024, 5, 1, tzinfo=UTC) + timedelta(seconds=1)
    seconds, _ = unix_seconds(pa.array([when], pa.timestamp(unit, tz="UTC")))
    assert seconds == [1714521601]


ARRAYS = {
    "int": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "float": (pa.float64(), st.floats(allow_nan=False)),
    "bool": (pa.bool_(), st.booleans()),
    "text": (pa.string(), st.text(max_size=4)),
    "large_text": (pa.large_string(), st.text(max_size=4)),
    "stamp": (pa.timestamp("us"), st.datetimes()),
    "tags": (pa.list_(pa.string()), st.lists(st.text(max_size=2), max_size=2)),
}


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(ARRAYS)), st.data())
def test_null_where_and_valid_mask_on_sliced_arrays(name, data):
    kind, values = ARRAYS[name]
    items = data.draw(st.lists(st.none() | values, max_size=20))
    start = data.draw(st.integers(0, len(items)))
    array = pa.array(items, kind).slice(start)
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=len(array), max_size=len(array))))
    expected = [None if m else v for v, m in zip(array.to_pylist(), mask, strict=True)]
    nulled = null_where(array, mask.astype(bool))
    nulled.validate(full=True)
    assert nulled.to_pylist() == expected
    assert valid_mask(array).tolist() == [v is not None for v in array.to_pylist()]
    assert valid_mask(nulled).tolist() == [v is not None for v in expected]


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.one_of(st.none(), st.sampled_from(["a", "b", "é", "🎉", ""])), max_size=30),
    st.lists(st.sampled_from(["a", "b", "é", "🎉", "", "z"]), unique=True),
)
def test_positions_in_is_arrow_index_in(values, keys):
    """Each value's position among the distinct keys, -1 where absent or null."""
    values, keys = pa.array(values, pa.string()), pa.array(keys, pa.string())
    expected = pc.fill_null(pc.index_in(values, value_set=keys), -1).to_numpy(zero_copy_only=False)
    got = positions_in(values, keys)
    assert got.tolist() == expected.tolist() and got.dtype == np.int64


def test_positions_in_refuses_repeated_keys():
    """A repeated key would add rows to the result: a caller's bug, not a lookup."""
    with pytest.raises(Exception, match="m:1"):
        positions_in(pa.array(["a", "b"]), pa.array(["a", "a"]))


def test_json_ready_durations_and_intervals_as_iso_8601():
    from connect_sync.transforms.values import iso_durations

    nano = pa.MonthDayNano
    intervals = pa.array(
        [nano([14, 3, 3_723_500_000_000]), nano([0, -1, -1_000_000_000]), nano([0, 0, 0]), None],
        pa.month_day_nano_interval(),
    )
    assert iso_durations(intervals).to_pylist() == ["P1Y2M3DT1H2M3.5S", "P-1DT-1S", "PT0S", None]
    seconds = pa.array([90_061, -1, None], pa.duration("s"))
    assert json_ready(seconds).to_pylist() == ["PT25H1M1S", "PT-1S", None]


def test_json_ready_decimals_stay_exact():
    from decimal import Decimal

    from connect_sync.transforms.values import decimal_json_text

    whole = pa.array([Decimal(2**70), Decimal(7), None], pa.decimal128(38, 0))
    assert json_ready(whole).type == pa.decimal128(38, 0)  # beyond int64: kept exact
    assert json_ready(pa.array([Decimal(7)], pa.decimal128(38, 0))).to_pylist() == [7]
    cents = pa.array([Decimal("858.18"), Decimal("0E-10"), Decimal("-1E-7")], pa.decimal128(38, 10))
    assert decimal_json_text(cents).to_pylist() == ["858.18", "0.0", "-0.0000001"]


def test_json_ready_counts_dates_and_times_no_payload_can_carry():
    from collections import Counter

    quality: Counter[str] = Counter()
    days = pa.array([19_844, 2**31 - 1, None], pa.int32()).view(pa.date32())
    assert json_ready(days, quality).to_pylist() == ["2024-05-01", None, None]
    assert quality == Counter({"invalid_date": 1})
    times = pa.array([45_296_500_000, 0], pa.time64("us"))
    assert json_ready(times).to_pylist() == ["12:34:56.5", "00:00:00"]


def test_nested_values_are_made_json_ready_inside():
    from decimal import Decimal

    stamps = pa.array([[datetime(2024, 5, 1, tzinfo=UTC)], None], pa.list_(pa.timestamp("us")))
    assert json_ready(stamps).to_pylist() == [["2024-05-01T00:00:00Z"], None]
    struct = pa.array(
        [{"b": b"\xaa", "p": Decimal("1.50")}],
        pa.struct([("b", pa.binary()), ("p", pa.decimal128(4, 2))]),
    )
    assert json_ready(struct).to_pylist() == [{"b": "qg==", "p": Decimal("1.50")}]
    texts = pa.array([["a", ""]], pa.list_(pa.string()))
    assert json_ready(texts) is texts  # nothing inside to change: the same array
