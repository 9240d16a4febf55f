"""Column values as JSON-ready values that keep their warehouse type, built column-wise.

Everything here works on whole columns (Arrow arrays, numpy). Payloads are written as
JSON text from these values (`transforms.json_objects`); `to_python` and `records` create
Python objects (one dict per row) where a caller needs dicts, and are the reference the
JSON objects are tested against.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from itertools import compress, repeat
from typing import Any

import numpy as np
import orjson
import pandas as pd
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

log = logging.getLogger(__name__)

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


#: The seconds since the epoch of 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
_FIRST_SECOND, _LAST_SECOND = -62_135_596_800, 253_402_300_799


def beyond_iso(array: pa.Array) -> np.ndarray:
    """True where a timestamp is not missing but outside the years 0001-9999 (`infinity`
    is stored as an int64 extreme): a time no payload can carry."""
    ints, unit = epoch_units(array)
    secs = np.floor_divide(ints, unit)
    return ~missing_mask(array) & ((secs < _FIRST_SECOND) | (secs > _LAST_SECOND))


def iso_utc(array: pa.Array) -> pa.Array:
    """Timestamps as ISO-8601 UTC strings with second precision: `2024-05-01T12:00:00Z`;
    null where missing or outside the years 0001-9999 (see `iso_utc_checked`)."""
    return iso_utc_checked(array)[0]


def iso_utc_checked(array: pa.Array) -> tuple[pa.Array, np.ndarray]:
    """`iso_utc`, and where a value is not a timestamp ISO-8601 can write: outside the years
    0001-9999, such as PostgreSQL's and DuckDB's `infinity` (the int64 extremes).

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
    invalid = valid & ((year < 1) | (year > 9999))  # outside what four digits can say
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
    return null_where(strings, ~valid | invalid), invalid


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


#: Why a value or a column is left out of a payload (the report's quality counters).
INVALID_TIMESTAMP = "invalid_timestamp"  # infinite, or outside the years 0001-9999
INVALID_DATE = "invalid_date"  # likewise
INVALID_NUMBER = "invalid_number"  # a NUMERIC `NaN` or `Infinity`
UNMAPPABLE = "unmappable_type"  # the values of a column whose type has no JSON form


class Unmappable(TypeError):
    """A column type with no JSON form: the column is left out and reported, never sent."""


def json_column(key: str, array: pa.Array) -> tuple[pa.Array | None, Counter[str]]:
    """`json_ready` for one payload key, and the values left out by reason. A column whose
    type has no JSON form is None (left out, logged, its values counted as UNMAPPABLE):
    one odd column never stops a run."""
    quality: Counter[str] = Counter()
    try:
        return json_ready(array, quality), quality
    except (Unmappable, pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        log.warning("column %r of type %s has no JSON form, left out: %s", key, array.type, exc)
        quality.clear()
        if values := len(array) - array.null_count:
            quality[UNMAPPABLE] += values
        return None, quality


def json_ready(array: pa.Array, quality: Counter[str] | None = None) -> pa.Array:
    """The column as JSON-ready values of its own type; null where the key is left out.

    Integers and booleans keep their type, floats lose NaN and infinities, empty strings
    become null, timestamps become ISO-8601 UTC strings, dates `YYYY-MM-DD`, times
    `HH:MM:SS[.ffffff]`, durations and intervals ISO-8601 durations (`P1DT2H`), bytes
    base64, decimals stay exact (written as JSON numbers from their digits, integers as
    integers), lists and structs element-wise. A timestamp or date that cannot be written,
    or a NUMERIC NaN, is null and counted in `quality` by reason. Raises `Unmappable` (or
    an Arrow error) for a type with no JSON form (see `json_column`).
    """
    kind = array.type
    if pa.types.is_integer(kind) or pa.types.is_boolean(kind) or pa.types.is_null(kind):
        return array
    if pa.types.is_floating(kind):
        array = array.cast(pa.float64())
        return pc.if_else(pc.is_finite(array), array, pa.scalar(None, pa.float64()))
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return blank_as_null(array)
    if pa.types.is_string_view(kind):
        return blank_as_null(array.cast(pa.string()))
    if pa.types.is_timestamp(kind):
        text, invalid = iso_utc_checked(array)
        _count(quality, INVALID_TIMESTAMP, invalid)
        return text
    if pa.types.is_decimal(kind):
        return _decimal_ready(array)
    if pa.types.is_date(kind):
        days = pc.fill_null(array.cast(pa.int32() if pa.types.is_date32(kind) else pa.int64()), 0)
        if pa.types.is_date64(kind):
            days = pc.divide(days, 86_400_000)
        year = _civil_from_days(np.asarray(days.to_numpy(zero_copy_only=False), np.int64))[0]
        invalid = ~missing_mask(array) & ((year < 1) | (year > 9999))
        _count(quality, INVALID_DATE, invalid)
        return null_where(null_where(array, invalid).cast(pa.string()), invalid)
    if pa.types.is_time(kind):  # `12:34:56`, `12:34:56.5`: no trailing fractional zeros
        text = pc.replace_substring_regex(array.cast(pa.string()), r"(\.[0-9]*?)0+$", r"\1")
        return pc.replace_substring_regex(text, r"\.$", "")
    if pa.types.is_duration(kind) or pa.types.is_interval(kind):
        return iso_durations(array)
    if (
        pa.types.is_binary(kind)
        or pa.types.is_large_binary(kind)
        or pa.types.is_fixed_size_binary(kind)
        or pa.types.is_binary_view(kind)
    ):
        return base64_text(array)
    if isinstance(kind, pa.BaseExtensionType):
        return _extension_ready(array, quality)
    if (
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
    ):
        return nested_ready(array, quality)
    raise Unmappable(f"no JSON form for {kind}")


def _count(quality: Counter[str] | None, reason: str, where: np.ndarray) -> None:
    if quality is not None and (count := int(np.count_nonzero(where))):
        quality[reason] += count


def _decimal_ready(array: pa.Array) -> pa.Array:
    """Whole decimals that fit as int64 (integers stay integers), others as they are
    (written from their digits, `decimal_json_text`)."""
    if array.type.scale == 0:
        try:
            return array.cast(pa.int64())
        except pa.ArrowInvalid:  # beyond int64: written from the digits
            return array
    return array


def decimal_json_text(array: pa.Array) -> pa.Array:
    """Decimals as JSON number text written from their digits (never through a float):
    `858.18`, trailing fractional zeros trimmed to one (`5.0`, as a float would be written),
    whole numbers of scale 0 as integers; null where missing."""
    text = array.cast(pa.string())
    scientific = pc.fill_null(pc.match_substring(text, "E"), False)
    if pc.any(scientific).as_py():  # Arrow writes |x| < 1e-6 as `1.000E-7`: a few rows
        rows = np.flatnonzero(scientific.to_numpy(zero_copy_only=False))
        plain = text.to_pylist()
        for row in rows:
            plain[row] = _plain_decimal(plain[row])
        text = pa.array(plain, pa.string())
    if array.type.scale <= 0:
        return text
    trimmed = pc.replace_substring_regex(text, r"^(-?\d+\.\d*?)0+$", r"\1")
    return pc.replace_substring_regex(trimmed, r"\.$", ".0")


def _plain_decimal(text: str) -> str:
    """A decimal in scientific notation written out in full (`1.000E-7`: `0.0000001000`)."""
    return format(Decimal(text), "f")


def _extension_ready(array: pa.Array, quality: Counter[str] | None) -> pa.Array:
    """Extension types (the readers turn UUIDs, JSON and network addresses into text):
    PostgreSQL NUMERIC (ADBC's opaque text) as exact numbers, other types stored as text
    as that text; the rest unmappable."""
    kind = array.type
    storage = (
        array.storage if isinstance(array, pa.ExtensionArray) else array.cast(kind.storage_type)
    )
    if isinstance(kind, pa.OpaqueType) and kind.type_name == "numeric":
        return _numeric_ready(storage, quality)
    if pa.types.is_string(storage.type) or pa.types.is_large_string(storage.type):
        return blank_as_null(storage.cast(pa.string()))
    name = getattr(kind, "type_name", None) or getattr(kind, "extension_name", kind)
    raise Unmappable(f"no JSON form for the extension type {name}")


_NUMBER = r"^-?[0-9]+(\.[0-9]+)?$"  # how PostgreSQL writes a finite NUMERIC


def _numeric_ready(text: pa.Array, quality: Counter[str] | None) -> pa.Array:
    """PostgreSQL NUMERIC sent as text (ADBC) as exact decimals: `NaN` and `Infinity`
    left out and counted; a value with more digits than decimal256 holds is unmappable."""
    text = text.cast(pa.string())
    number = pc.fill_null(pc.match_substring_regex(text, _NUMBER), True)
    invalid = ~number.to_numpy(zero_copy_only=False)
    _count(quality, INVALID_NUMBER, invalid)
    text = null_where(text, invalid)
    whole = pc.binary_length(pc.replace_substring_regex(text, r"^-|\..*$", ""))
    fraction = pc.binary_length(pc.replace_substring_regex(text, r"^-?[0-9]*\.?", ""))
    scale = pc.max(fraction).as_py() or 0
    precision = max((pc.max(whole).as_py() or 1) + scale, 1)
    if precision > 76:
        raise Unmappable(f"NUMERIC with {precision} digits")
    target = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(76, scale)
    return _decimal_ready(text.cast(target))


def base64_text(array: pa.Array) -> pa.Array:
    """Bytes as standard base64 text (`YWJj`); null where missing."""
    if not (pa.types.is_binary(array.type) or pa.types.is_large_binary(array.type)):
        array = array.cast(pa.large_binary())
    encoded = pl.Series(array).bin.encode("base64").to_arrow()
    return encoded.cast(pa.string())


def iso_durations(array: pa.Array) -> pa.Array:
    """Durations and intervals as ISO-8601 durations: `P1Y2M3DT4H5M6.5S`, zero parts left
    out (`PT0S` for none), each negative part with its sign (`P-1D`); null where missing."""
    kind, n = array.type, len(array)
    if pa.types.is_duration(kind):
        per_second = _UNIT_PER_SECOND[kind.unit]
        raw = pc.fill_null(array.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        months = days = np.zeros(n, dtype=np.int64)
        seconds, fraction = np.divmod(np.abs(raw), per_second)
        nanos = np.sign(raw) * fraction * (1_000_000_000 // per_second)
        seconds = np.sign(raw) * seconds
    elif kind == pa.month_day_nano_interval():
        fields = np.dtype([("months", "<i4"), ("days", "<i4"), ("nanos", "<i8")])
        values = np.frombuffer(array.buffers()[1], dtype=fields)[array.offset : array.offset + n]
        months, days = values["months"].astype(np.int64), values["days"].astype(np.int64)
        raw = values["nanos"]
        seconds = np.sign(raw) * (np.abs(raw) // 1_000_000_000)
        nanos = np.sign(raw) * (np.abs(raw) % 1_000_000_000)
    else:
        raise Unmappable(f"no JSON form for {kind}")
    parts = {
        "y": np.sign(months) * (np.abs(months) // 12),
        "mo": np.sign(months) * (np.abs(months) % 12),
        "d": days,
        "h": np.sign(seconds) * (np.abs(seconds) // 3600),
        "mi": np.sign(seconds) * (np.abs(seconds) // 60 % 60),
        "s": np.sign(seconds) * (np.abs(seconds) % 60),
        "ns": nanos,
    }
    frame = pl.DataFrame({k: pl.Series(v, dtype=pl.Int64) for k, v in parts.items()})

    def part(column: str, suffix: str) -> pl.Expr:
        value = pl.col(column)
        return pl.when(value != 0).then(value.cast(pl.String) + suffix).otherwise(pl.lit(""))

    negative = (pl.col("s") < 0) | (pl.col("ns") < 0)
    fraction = (pl.col("ns").abs() + 1_000_000_000).cast(pl.String).str.slice(1)
    fraction = fraction.str.strip_chars_end("0")
    second = (
        pl.when((pl.col("s") != 0) | (pl.col("ns") != 0))
        .then(
            pl.when(negative).then(pl.lit("-")).otherwise(pl.lit(""))
            + pl.col("s").abs().cast(pl.String)
            + pl.when(pl.col("ns") != 0).then("." + fraction).otherwise(pl.lit(""))
            + "S"
        )
        .otherwise(pl.lit(""))
    )
    date = part("y", "Y") + part("mo", "M") + part("d", "D")
    time = part("h", "H") + part("mi", "M") + second
    text = (
        pl.when((date == "") & (time == ""))
        .then(pl.lit("PT0S"))
        .otherwise("P" + date + pl.when(time != "").then("T" + time).otherwise(pl.lit("")))
    )
    out = frame.select(text).to_series().to_arrow().cast(pa.string())
    return null_where(out, missing_mask(array))


def nested_ready(array: pa.Array, quality: Counter[str] | None = None) -> pa.Array:
    """Lists, structs and maps with every element JSON-ready (timestamps as ISO text, bytes
    as base64, ...); text, numbers and booleans inside are kept as they are (an empty
    string stays one), and the array itself when nothing inside changes."""
    kind = array.type
    if not _needs_work(kind):
        return array
    mask = pc.is_null(array) if array.null_count else None
    if pa.types.is_struct(kind):
        children = [nested_ready(child, quality) for child in array.flatten()]
        names = [kind.field(i).name for i in range(kind.num_fields)]
        return pa.StructArray.from_arrays(children, names=names, mask=mask)
    if pa.types.is_map(kind):
        keys = nested_ready(array.keys, quality)
        items = nested_ready(array.items, quality)
        return pa.MapArray.from_arrays(array.offsets, keys, items, mask=mask)
    if pa.types.is_fixed_size_list(kind):
        array = array.cast(pa.list_(kind.value_field))
        kind = array.type
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        values = nested_ready(array.values, quality)
        make = pa.LargeListArray if pa.types.is_large_list(kind) else pa.ListArray
        return make.from_arrays(array.offsets, values, mask=mask)
    ready = json_ready(array, quality)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return array  # an empty string inside a list or object is sent as one
    return ready


def _needs_work(kind: pa.DataType) -> bool:
    """Whether a (nested) type holds values not written inside JSON as they are."""
    if (
        pa.types.is_integer(kind)
        or pa.types.is_floating(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
        or pa.types.is_null(kind)
    ):
        return False
    if pa.types.is_map(kind):
        return _needs_work(kind.key_type) or _needs_work(kind.item_type)
    if pa.types.is_struct(kind):
        return any(_needs_work(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind):
        return _needs_work(kind.value_type)
    return True


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
    if pa.types.is_decimal(kind):  # exact: embedded as the digits `decimal_json_text` writes
        return [
            None if t is None else orjson.Fragment(t) for t in decimal_json_text(array).to_pylist()
        ]
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
