"""The compiled JSON writer (transforms/json_kernels.py) against orjson, on the edge cases:
escapes, unicode, extreme integers, nulls everywhere, sliced and large Arrow arrays."""

from __future__ import annotations

from typing import Any

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
from connect_sync.transforms.json_objects import json_objects, json_records, json_texts
from connect_sync.transforms.values import Field, records
from hypothesis import given, settings
from hypothesis import strategies as st

CONTROL = "".join(map(chr, range(32)))


def sorted_json(record: dict[str, Any]) -> bytes:
    return orjson.dumps(record, option=orjson.OPT_SORT_KEYS)


def expected(fields: list[Field], n: int) -> list[bytes]:
    return [sorted_json(r) for r in records(fields, n)]


def test_every_control_character_quote_and_backslash_is_escaped_as_orjson_does():
    values = [CONTROL, *CONTROL, '"', "\\", 'a"b\\c\x7f', "é 🎉 \u2028 東京", "", None]
    for kind in (pa.string(), pa.large_string()):
        out = json_records([Field("s", pa.array(values, kind))], len(values))
        assert out == [b"{}" if v is None else orjson.dumps({"s": v}) for v in values]


def test_keys_are_escaped_and_sorted_as_orjson_does():
    keys = ['"q"', "b\\", "a\n", "é", "🎉", "Z", "_"]
    fields = [Field(k, pa.array([j, None])) for j, k in enumerate(keys)]
    assert json_records(fields, 2) == expected(fields, 2)


def test_extreme_and_negative_integers():
    ints = [0, -1, 1, 9, 10, -10, 2**63 - 1, -(2**63), 10**18, -(10**18), None]
    fields = [
        Field("i", pa.array(ints, pa.int64())),
        Field("s", pa.array([None if v is None else v % 127 - 63 for v in ints], pa.int8())),
        Field("u", pa.array([None if v is None else abs(v) for v in ints], pa.uint64())),
        Field("w", pa.array([2**64 - 1, 2**63, 0, *[None] * 8], pa.uint64())),
    ]
    assert json_records(fields, len(ints)) == expected(fields, len(ints))


def test_booleans_floats_and_nulls():
    fields = [
        Field("b", pa.array([True, False, None, True])),
        Field("f", pa.array([0.1, -2.5e-300, None, 1e22])),
        Field("f32", pa.array([0.1, None, 3.0, -0.0], pa.float32())),
        Field("nothing", pa.nulls(4, pa.string())),
        Field("null_type", pa.nulls(4)),
    ]
    assert json_records(fields, 4) == expected(fields, 4)


def test_no_rows_no_fields_and_all_null_columns():
    assert json_records([], 0) == []
    assert json_records([Field("a", pa.array([], pa.string()))], 0) == []
    assert json_texts([Field("a", pa.array([], pa.int64()))], 0).to_pylist() == []
    assert json_objects([], 0).to_list() == []
    assert json_records([Field("a", pa.nulls(3, pa.int64()))], 3) == [b"{}"] * 3
    assert json_objects([Field("a", pa.nulls(3, pa.int64()))], 3).to_list() == [None] * 3


def test_sliced_arrays_are_read_from_their_offset():
    text = pa.array(["skip", 'x"', "y", None, "z"]).slice(1, 3)
    ints = pa.array([7, 8, 9, 10]).slice(1, 3)
    tags = pa.array([["a"], ["b", "c"], [], None, ["d"]], pa.list_(pa.string())).slice(1, 3)
    fields = [Field("t", text), Field("i", ints), Field("tags", tags)]
    assert json_records(fields, 3) == expected(fields, 3)


def test_text_lists_with_escapes_empty_lists_and_null_items():
    lists = [["a", 'q"', "\n"], [], None, ["é", "🎉"]]
    for kind in (pa.list_(pa.string()), pa.large_list(pa.large_string())):
        field = Field("l", pa.array(lists, kind))
        assert json_records([field], 4) == expected([field], 4)
    with_null = Field("l", pa.array([["a", None], ["b"]], pa.list_(pa.string())))
    assert json_records([with_null], 2) == expected([with_null], 2)


def test_missing_mask_and_nulls_both_leave_the_key_out():
    field = Field("a", pa.array(["x", None, "z"]), np.array([True, False, False]))
    assert json_records([field], 3) == [b"{}", b"{}", b'{"a":"z"}']


def test_encoded_text_and_python_values_are_embedded():
    inner = pl.Series(['{"y":1}', None, "[1,2]"])
    python = Field("p", [{"b": 1, "a": [None, "é"]}, "x", 3], np.array([False, True, False]))
    out = json_records([Field("e", inner, encoded=True), python], 3)
    assert out == [b'{"e":{"y":1},"p":{"a":[null,"\xc3\xa9"],"b":1}}', b"{}", b'{"e":[1,2],"p":3}']


def test_json_texts_are_null_where_a_row_has_no_key():
    fields = [Field("a", pa.array([1, None, 3])), Field("b", pa.array([None, None, True]))]
    texts = json_texts(fields, 3)
    assert texts.type == pa.large_string()
    assert texts.to_pylist() == ['{"a":1}', None, '{"a":3,"b":true}']


ROWS = st.integers(0, 8)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_any_text_ints_and_lists_are_written_as_orjson_writes_them(data):
    n = data.draw(ROWS)
    texts = data.draw(st.lists(st.none() | st.text(), min_size=n, max_size=n))
    ints = data.draw(st.lists(st.none() | st.integers(-(2**63), 2**63 - 1), min_size=n, max_size=n))
    items = st.lists(st.text(max_size=4), max_size=3)
    lists = data.draw(st.lists(st.none() | items, min_size=n, max_size=n))
    keys = data.draw(st.lists(st.text(max_size=3), min_size=3, max_size=3, unique=True))
    fields = [
        Field(keys[0], pa.array(texts, pa.string())),
        Field(keys[1], pa.array(ints, pa.int64())),
        Field(keys[2], pa.array(lists, pa.list_(pa.string()))),
    ]
    assert json_records(fields, n) == expected(fields, n)
