"""Column values as JSON-ready values that keep their warehouse type, built column-wise.

Everything here works on whole columns (Arrow arrays, numpy). Payloads are written as
JSON text from these values (`transforms.json_objects`); `to_python` and `records` create
Python objects (one dict per row) where a caller needs dicts, and are the reference the
JSON objects are tested against.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from itertools import compress, repeat
from typing import Any

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"
_UNIT_PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


# -- columns as Arrow arrays ---------------------------------------------------------------


def as_arrow(values: Any) -> pa.Array | None:
    """One contiguous Arrow array for a Series, Index, array or list (dictionaries decoded).

    None when the values have no Arrow type (an object column mixing kinds of values).
    """
    if isinstance(values, pa.ChunkedArray):
        array = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    elif isinstance(values, pa.Array):
        array = values
    else:
        if isinstance(values, pd.Series | pd.Index):
            # the values alone: pyarrow's attribute probes on a Series look names up in
            # its index (about 1 ms each on a million-row index)
            values = values.array
        try:
            array = pa.array(values, from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
            return None
        if isinstance(array, pa.ChunkedArray):
            array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    return array


def as_text(values: Any) -> pa.Array:
    """A column as one Arrow `string` array: text as it is, other values written as text."""
    array = as_arrow(values)
    if array is None or not (
        pa.types.is_string(array.type)
        or pa.types.is_large_string(array.type)
        or pa.types.is_null(array.type)
    ):
        array = as_arrow(pd.Series(values).astype("string"))
    return array.cast(pa.string())


def text_buffers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """int64 offsets (one per value, plus the end) into the UTF-8 bytes of a text array."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.large_string())
    width = np.dtype(np.int64 if pa.types.is_large_string(array.type) else np.int32)
    _, offsets, data = array.buffers()
    start = array.offset * width.itemsize
    offsets = np.frombuffer(offsets, dtype=width, count=len(array) + 1, offset=start)
    data = np.zeros(0, dtype=np.uint8) if data is None else np.frombuffer(data, dtype=np.uint8)
    return offsets.astype(np.int64), data


def positions_in(values: pa.Array, keys: pa.Array) -> np.ndarray:
    """The position in `keys` (distinct) of each value; -1 where none (and for nulls).

    A polars hash join, on every core: at millions of text values 2-3x faster than
    Arrow's `index_in`, which hashes and probes on one thread."""
    left = pl.DataFrame({"key": pl.Series(values)})
    right = pl.DataFrame(
        {"key": pl.Series(keys), "at": pl.int_range(0, len(keys), eager=True, dtype=pl.Int64)}
    )
    found = left.join(right, on="key", how="left", maintain_order="left", validate="m:1")["at"]
    return found.fill_null(-1).to_numpy()


def as_series(array: pa.Array, index: pd.Index | None = None) -> pd.Series:
    """An Arrow array as a Series with an Arrow dtype (ints stay ints through nulls)."""
    return pd.Series(pd.arrays.ArrowExtensionArray(array), index=index, copy=False)


def missing_mask(array: pa.Array) -> np.ndarray:
    """True where a value is null (NaN floats count as null)."""
    if pa.types.is_floating(array.type):
        return ~pc.fill_null(pc.invert(pc.is_nan(array)), False).to_numpy(zero_copy_only=False)
    if array.null_count == 0:
        return np.zeros(len(array), dtype=bool)
    return ~valid_mask(array)


def object_array(items: list[Any]) -> np.ndarray:
    """A 1-d object array of the items, even when they are lists of equal length."""
    return np.fromiter(items, dtype=object, count=len(items))


def null_where(array: pa.Array, mask: np.ndarray) -> pa.Array:
    """The array with nulls where `mask` is True.

    Flat arrays (numbers, times, booleans, text) keep their buffers and get a new validity
    bitmap; others are copied by `if_else`.
    """
    if not mask.any():
        return array
    if not _flat(array.type):
        return pc.if_else(pa.array(mask), pa.scalar(None, array.type), array)
    keep = np.zeros(array.offset + len(array), dtype=bool)
    keep[array.offset :] = ~mask
    if array.null_count:
        keep[array.offset :] &= valid_mask(array)
    bitmap = pa.py_buffer(np.packbits(keep, bitorder="little"))
    buffers = [bitmap, *array.buffers()[1:]]
    return pa.Array.from_buffers(array.type, len(array), buffers, offset=array.offset)


def _flat(kind: pa.DataType) -> bool:
    """Types whose arrays are a validity bitmap plus value buffers, no children."""
    return (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_temporal(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
    )


def valid_mask(array: pa.Array) -> np.ndarray:
    """True where a value is not null (NaN floats count as valid here), read from the
    validity bitmap."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    bitmap = array.buffers()[0] if array.null_count else None
    if bitmap is None or pa.types.is_null(array.type):
        return np.full(len(array), not pa.types.is_null(array.type))
    bits = np.unpackbits(
        np.frombuffer(bitmap, dtype=np.uint8), count=array.offset + len(array), bitorder="little"
    )
    return bits[array.offset :].view(bool)


def is_timestamp(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        return pa.types.is_timestamp(dtype.pyarrow_dtype) or pa.types.is_date(dtype.pyarrow_dtype)
    return pd.api.types.is_datetime64_any_dtype(dtype)


# -- timestamps -----------------------------------------------------------------------------


def epoch_units(array: pa.Array) -> tuple[np.ndarray, int]:
    """A timestamp or date array as int64 units since the epoch (UTC; nulls as 0), and the
    number of units per second."""
    if pa.types.is_date(array.type):
        array = pc.cast(array, pa.timestamp("s"))
    unit = _UNIT_PER_SECOND[array.type.unit]
    ints = pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    return ints, unit


def iso_utc(array: pa.Array) -> pa.Array:
    """Timestamps as ISO-8601 UTC strings with second precision: `2024-05-01T12:00:00Z`.

    Naive timestamps are taken as UTC (as Segment writes them). Formatted with integer
    arithmetic into one byte buffer (Arrow's strftime costs about 1 µs a value).
    """
    n = len(array)
    ints, unit = epoch_units(array)
    secs = np.floor_divide(ints, unit)
    days = np.floor_divide(secs, 86_400)
    sod = secs - days * 86_400
    year, month, day = _civil_from_days(days)
    valid = ~missing_mask(array)
    if ((year < 1) | (year > 9999))[valid].any():  # outside what four digits can say
        floored = pc.floor_temporal(array, unit="second")
        return pc.strftime(pc.cast(floored, pa.timestamp("s", tz="UTC")), ISO_UTC)
    text = np.empty((n, 20), dtype=np.uint8)
    zero = ord("0")
    for position, divisor in enumerate((1000, 100, 10, 1)):
        text[:, position] = zero + (year // divisor) % 10
    text[:, 4] = text[:, 7] = ord("-")
    text[:, 10] = ord("T")
    text[:, 13] = text[:, 16] = ord(":")
    text[:, 19] = ord("Z")
    for start, part in ((5, month), (8, day), (11, sod // 3600), (14, sod // 60 % 60)):
        text[:, start] = zero + part // 10
        text[:, start + 1] = zero + part % 10
    text[:, 17] = zero + sod % 60 // 10
    text[:, 18] = zero + sod % 10
    offsets = np.arange(0, 20 * (n + 1), 20, dtype=np.int32)
    strings = pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))
    return null_where(strings, ~valid)


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 (H. Hinnant's civil_from_days)."""
    z = days + 719_468
    era = np.floor_divide(z, 146_097)
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    day = doy - (153 * mp + 2) // 5 + 1
    month = np.where(mp < 10, mp + 3, mp - 9)
    year = yoe + era * 400 + (month <= 2)
    return year, month, day


def unix_seconds(array: pa.Array) -> tuple[list[Any], np.ndarray]:
    """Timestamps as Unix seconds (int when whole, else float, to the microsecond), and the
    missing mask."""
    ints, unit = epoch_units(array)
    micros = ints * (1_000_000 // unit) if unit <= 1_000_000 else np.floor_divide(ints, 1000)
    whole = micros % 1_000_000 == 0
    values = (micros / 1_000_000).astype(object)
    values[whole] = np.floor_divide(micros[whole], 1_000_000).astype(object)
    return values.tolist(), missing_mask(array)


# -- JSON-ready values ----------------------------------------------------------------------


def blank_as_null(text: pa.Array) -> pa.Array:
    """Text with empty strings as null."""
    return pc.if_else(pc.equal(pc.binary_length(text), 0), pa.scalar(None, text.type), text)


def json_ready(array: pa.Array) -> pa.Array:
    """The column as JSON-ready values of its own type; null where the key is left out.

    Integers and booleans keep their type, floats lose NaN and infinities, empty strings
    become null, timestamps become ISO-8601 UTC strings, dates `YYYY-MM-DD`.
    """
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return array
    if pa.types.is_floating(kind):
        array = array.cast(pa.float64())
        return pc.if_else(pc.is_finite(array), array, pa.scalar(None, pa.float64()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return blank_as_null(array)
    if pa.types.is_timestamp(kind):
        return iso_utc(array)
    if pa.types.is_decimal(kind):
        target = pa.int64() if kind.scale == 0 else pa.float64()
        try:
            return json_ready(array.cast(target))
        except pa.ArrowInvalid:
            return json_ready(array.cast(pa.float64(), safe=False))
    if pa.types.is_date(kind) or pa.types.is_time(kind) or pa.types.is_duration(kind):
        return array.cast(pa.string())
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        try:
            return json_ready(array.cast(pa.string()))
        except pa.ArrowInvalid:
            text = [None if v is None else v.decode("utf-8", "replace") for v in array.to_pylist()]
            return json_ready(pa.array(text, pa.string()))
    return array  # nested values: lists and objects are JSON as they are


def to_python(array: pa.Array) -> list[Any]:
    """Python values of an Arrow array; nulls become an arbitrary filler (mask them).

    A text column with few distinct values (plan, country, ...) creates each string once
    and shares it.
    """
    kind = array.type
    if (pa.types.is_string(kind) or pa.types.is_large_string(kind)) and _few_distinct(array):
        encoded = pc.dictionary_encode(array)
        strings = object_array([*encoded.dictionary.to_pylist(), None])
        codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False)
        return strings[codes].tolist()
    if pa.types.is_integer(kind):
        return pc.fill_null(array, 0).to_numpy(zero_copy_only=False).tolist()
    if pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if pa.types.is_boolean(kind):
            array = pc.fill_null(array, False)
        return array.to_numpy(zero_copy_only=False).tolist()
    return array.to_pylist()


def _few_distinct(array: pa.Array, sample: int = 2048) -> bool:
    """Whether a text column probably has few distinct values (judged on a sample)."""
    if len(array) < 4 * sample:
        return False
    return pc.count_distinct(array.slice(0, sample)).as_py() <= sample // 8


def python_values(values: Any) -> list[Any]:
    """A column as JSON-ready Python values, None where the key would be left out."""
    array = as_arrow(values)
    if array is None:  # an object column of mixed values: each kept as it is
        return [None if v is None or v != v or v == "" else v for v in list(values)]
    ready = json_ready(array)
    out = np.empty(len(ready), dtype=object)
    out[:] = to_python(ready)
    out[missing_mask(ready)] = None
    return out.tolist()


# -- records: many dicts at once --------------------------------------------------------------


class Field:
    """One key of many records: its values and where it is left out.

    `values` is an Arrow array (left out where null) or a Python list with a `missing`
    mask (True: leave the key out). `encoded`: the values are JSON text already (an Arrow
    or polars string column, null where left out), embedded as they are.
    """

    __slots__ = ("encoded", "key", "missing", "values")

    def __init__(
        self,
        key: str,
        values: pa.Array | pl.Series | list[Any],
        missing: np.ndarray | None = None,
        *,
        encoded: bool = False,
    ) -> None:
        self.key = key
        self.values = values
        self.encoded = encoded
        if missing is None:
            if isinstance(values, pa.Array):
                missing = missing_mask(values)
            elif isinstance(values, pl.Series):
                missing = values.is_null().to_numpy()
            else:
                missing = np.zeros(len(values), dtype=bool)
        self.missing = missing

    def dense(self) -> list[Any]:
        if isinstance(self.values, pa.Array):
            return to_python(self.values)
        if isinstance(self.values, pl.Series):
            return self.values.to_list()
        return self.values


@contextmanager
def paused_gc() -> Iterator[None]:
    """No cyclic garbage collection while building many containers at once.

    Building a million dicts triggers many full collections that find nothing (records
    hold no cycles); pausing them roughly halves the time.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def records(fields: Sequence[Field], n: int) -> list[dict[str, Any]]:
    """`n` dicts with the fields' keys in order, each key left out where it is missing.

    One C-level pass builds every dict from its row's values (`dict(zip(...))`, with
    `itertools.compress` dropping the missing ones): no Python bytecode runs per row, and
    each dict is touched once while it is hot in the cache.
    """
    fields = [f for f in fields if not f.missing.all()] if n else []
    if not fields:
        return [{} for _ in range(n)]
    keys = tuple(f.key for f in fields)
    columns = [f.dense() for f in fields]
    with paused_gc():
        rows = zip(*columns, strict=True)
        if not any(f.missing.any() for f in fields):
            return list(map(dict, map(zip, repeat(keys), rows)))
        # Per row, one bytes object of 0/1 selectors (a fixed-width bytes view of the
        # presence matrix; trailing zeros are dropped, and compress stops there anyway).
        present = np.empty((n, len(fields)), dtype=np.uint8)
        for j, f in enumerate(fields):
            present[:, j] = ~f.missing
        selectors = present.view(f"S{len(fields)}").ravel().tolist()
        return list(map(dict, map(compress, map(zip, repeat(keys), rows), selectors)))
