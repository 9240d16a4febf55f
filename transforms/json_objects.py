"""JSON objects for many rows at once, built column-wise as UTF-8 text (no dict per row).

Each field becomes a column of `"key":value` pieces (null where the key is left out) and
the pieces of each row are joined in polars (Rust), keys in sorted order at every level.
Values are written as orjson writes them (integers, `true`/`false`, floats in their
shortest round-trip form, strings with the same escapes), so an object's bytes equal
`orjson.dumps(record, option=orjson.OPT_SORT_KEYS)` of the dict `values.records` builds
from the same fields: the change-detection fingerprints of earlier runs stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from itertools import compress

import numpy as np
import orjson
import polars as pl
import pyarrow as pa

from transforms.values import Field, epoch_units, missing_mask, null_where

_DUMPS_SORTED = partial(orjson.dumps, option=orjson.OPT_SORT_KEYS)
_TEXT = pl.String
#: What a column holds: JSON text already, text that needs no escaping, or typed values.
JSON, PLAIN_TEXT, VALUES = "json", "plain_text", "values"


def _scalar(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _written_by_polars(kind: pa.DataType) -> bool:
    """Types whose JSON text polars writes exactly as orjson does (no keys, no NaN)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _scalar(kind.value_type)
    return _scalar(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)


def python_json(values: Sequence[object], missing: np.ndarray) -> pl.Series:
    """JSON text of Python values by orjson (keys sorted), null where `missing`."""
    texts = pa.array(list(map(_DUMPS_SORTED, compress(values, ~missing))), pa.binary())
    where = pa.array(np.cumsum(~missing) - 1, mask=missing)
    taken = texts.take(where) if len(texts) else pa.nulls(len(values), pa.binary())
    return _series(taken.cast(pa.string()))


def _series(array: pa.Array) -> pl.Series:
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def _plain_text(array: pa.Array) -> bool:
    """Whether no string of the array needs a JSON escape: no control character, `"` or
    `\\` (92) in its whole data buffer (UTF-8 multi-byte sequences never contain them; a
    stray byte outside the values only costs the escaping path)."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return False
    data = array.buffers()[2]
    if data is None or data.size == 0:
        return True
    octets = np.frombuffer(data, dtype=np.uint8)
    return octets.min() >= 0x20 and not (octets == ord('"')).any() and not (octets == 92).any()


def _column(field: Field) -> tuple[pl.Series, str]:
    """The field's values as a polars column, null where the key is left out, and what
    they are: JSON text already (encoded fields, and values polars does not write as
    orjson does, which orjson writes here one by one), text without escapes, or values."""
    values, missing = field.values, field.missing
    if isinstance(values, pl.Series):
        values = values.cast(_TEXT) if field.encoded else values.to_arrow()
    if isinstance(values, pa.Array):
        if missing.any() and values.null_count != np.count_nonzero(missing):
            values = null_where(values, missing)
        if field.encoded:
            return _series(values).cast(_TEXT), JSON
        if not _written_by_polars(values.type):  # structs, maps, ...: orjson, keys sorted
            return python_json(values.to_pylist(), missing_mask(values)), JSON
        return _series(values), PLAIN_TEXT if _plain_text(values) else VALUES
    if isinstance(values, pl.Series):
        masked = pl.select(pl.when(pl.Series(~missing)).then(values)).to_series()
        return (masked if missing.any() else values), JSON
    return python_json(values, missing), JSON


def _piece(key: str, name: str, dtype: pl.DataType, kind: str) -> pl.Expr:
    """`"key":value` for each row of column `name`, null where the value is."""
    value = pl.col(name)
    prefix = pl.lit(orjson.dumps(key).decode() + ":")
    if kind == JSON:
        return pl.concat_str([prefix, value])
    if kind == PLAIN_TEXT:
        return pl.concat_str([prefix, pl.lit('"'), value, pl.lit('"')])
    if dtype == pl.Null:
        return pl.lit(None, _TEXT)
    if dtype.is_integer():
        return pl.concat_str([prefix, value.cast(_TEXT)])
    if dtype.is_float():  # polars writes floats as orjson does; NaN and inf are left out
        text = value.cast(pl.Float64).cast(_TEXT)
        return pl.when(value.is_finite()).then(pl.concat_str([prefix, text]))
    if dtype == pl.Boolean:
        text = pl.when(value).then(pl.lit("true")).when(value.not_()).then(pl.lit("false"))
        return pl.concat_str([prefix, text])
    # strings to escape and lists: polars' JSON writer, on a one-key object named `key`
    member = pl.struct(value.alias(key)).struct.json_encode()
    return pl.when(value.is_not_null()).then(member.str.strip_prefix("{").str.strip_suffix("}"))


def json_objects(fields: Sequence[Field], n: int) -> pl.Series:
    """`n` JSON objects as text, keys sorted, each key left out where it is missing; null
    where a row has no key at all."""
    fields = sorted((f for f in fields if not f.missing.all()), key=lambda f: f.key) if n else []
    if not fields:
        return pl.Series("json", [None] * n, dtype=_TEXT)
    columns = [_column(f) for f in fields]
    frame = pl.DataFrame({str(j): series for j, (series, _) in enumerate(columns)})
    pieces = [
        _piece(f.key, str(j), series.dtype, kind)
        for j, (f, (series, kind)) in enumerate(zip(fields, columns, strict=True))
    ]
    present = ~np.logical_and.reduce([f.missing for f in fields])
    body = pl.concat_str(pieces, separator=",", ignore_nulls=True)
    wrapped = pl.concat_str([pl.lit("{"), body, pl.lit("}")])
    return frame.select(pl.when(pl.lit(pl.Series(present))).then(wrapped).alias("json")).to_series()


def json_records(fields: Sequence[Field], n: int) -> list[bytes]:
    """`n` JSON objects as bytes (`{}` for a row with no key): the bytes form of
    `values.records`."""
    return json_objects(fields, n).fill_null("{}").cast(pl.Binary).to_list()


def unix_seconds_json(array: pa.Array) -> pl.Series:
    """Timestamps as JSON Unix seconds: an integer when whole, else a float to the
    microsecond (as `values.unix_seconds`); null where missing."""
    ints, unit = epoch_units(array)
    micros = ints * (1_000_000 // unit) if unit <= 1_000_000 else np.floor_divide(ints, 1000)
    whole = np.floor_divide(micros, 1_000_000)
    # numpy's true division, correctly rounded as Python's (polars may multiply by 1e-6)
    fractional = micros / 1_000_000
    text = pl.select(
        pl.when(pl.Series(micros % 1_000_000 == 0))
        .then(pl.Series(whole).cast(_TEXT))
        .otherwise(pl.Series(fractional).cast(_TEXT))
    ).to_series()
    missing = missing_mask(array)
    if missing.any():
        text = pl.select(pl.when(pl.Series(~missing)).then(text)).to_series()
    return text
