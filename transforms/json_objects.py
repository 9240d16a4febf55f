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


def _scalar(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _encoded_by_polars(kind: pa.DataType) -> bool:
    """Types whose JSON text polars writes exactly as orjson does (no keys, no NaN)."""
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return _scalar(kind.value_type)
    return _scalar(kind) or pa.types.is_floating(kind) or pa.types.is_null(kind)


def arrow_json(array: pa.Array) -> pl.Series:
    """JSON text of each value of an Arrow array of JSON-ready values; null stays null.

    Nested objects (structs, maps) go through orjson value by value (keys sorted).
    """
    kind = array.type
    if not _encoded_by_polars(kind):
        return python_json(array.to_pylist(), missing_mask(array))
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    if pa.types.is_null(kind):
        return pl.Series(series.name, [None] * len(series), dtype=_TEXT)
    if pa.types.is_integer(kind):
        return series.cast(_TEXT)
    if pa.types.is_boolean(kind):
        return pl.select(
            pl.when(series).then(pl.lit("true")).when(series.not_()).then(pl.lit("false"))
        ).to_series()
    if pa.types.is_floating(kind):  # polars writes floats as orjson does; NaN and inf: null
        finite = pl.when(series.is_finite()).then(series.cast(pl.Float64).cast(_TEXT))
        return pl.select(finite).to_series()
    # strings and lists of scalars: polars' JSON writer, without the wrapping object
    frame = pl.DataFrame({"v": series})
    encoded = pl.struct("v").struct.json_encode().str.strip_prefix('{"v":').str.strip_suffix("}")
    return frame.select(pl.when(pl.col("v").is_not_null()).then(encoded)).to_series()


def python_json(values: Sequence[object], missing: np.ndarray) -> pl.Series:
    """JSON text of Python values by orjson (keys sorted), null where `missing`."""
    texts = pa.array(list(map(_DUMPS_SORTED, compress(values, ~missing))), pa.binary())
    where = pa.array(np.cumsum(~missing) - 1, mask=missing)
    taken = texts.take(where) if len(texts) else pa.nulls(len(values), pa.binary())
    return pl.from_arrow(taken.cast(pa.string()))  # type: ignore[return-value]


def field_json(field: Field) -> pl.Series:
    """JSON text of a field's values, null where the key is left out."""
    values, missing = field.values, field.missing
    if not isinstance(values, pa.Array | pl.Series):
        return python_json(values, missing)
    if isinstance(values, pa.Array):
        if missing.any() and values.null_count != np.count_nonzero(missing):
            values = null_where(values, missing)
        values = pl.from_arrow(values) if field.encoded else values
    if field.encoded:
        series = values.cast(_TEXT)
    else:
        series = arrow_json(values.to_arrow() if isinstance(values, pl.Series) else values)
    if missing.any() and series.null_count() != np.count_nonzero(missing):
        series = pl.select(pl.when(pl.Series(~missing)).then(series)).to_series()
    return series


def _key(key: str) -> str:
    return orjson.dumps(key).decode() + ":"


def json_objects(fields: Sequence[Field], n: int) -> pl.Series:
    """`n` JSON objects as text, keys sorted, each key left out where it is missing; null
    where a row has no key at all."""
    fields = sorted((f for f in fields if not f.missing.all()), key=lambda f: f.key) if n else []
    if not fields:
        return pl.Series("json", [None] * n, dtype=_TEXT)
    columns = pl.DataFrame({str(j): field_json(f) for j, f in enumerate(fields)})
    pieces = [pl.concat_str([pl.lit(_key(f.key)), pl.col(str(j))]) for j, f in enumerate(fields)]
    body = columns.select(pl.concat_str(pieces, separator=",", ignore_nulls=True)).to_series()
    return pl.select(
        pl.when(body != "").then(pl.concat_str([pl.lit("{"), body, pl.lit("}")])).alias("json")
    ).to_series()


def json_records(fields: Sequence[Field], n: int) -> list[bytes]:
    """`n` JSON objects as bytes (`{}` for a row with no key): the bytes form of
    `values.records`."""
    return json_objects(fields, n).fill_null("{}").cast(pl.Binary).to_list()


def unix_seconds_json(array: pa.Array) -> pl.Series:
    """Timestamps as JSON Unix seconds: an integer when whole, else a float to the
    microsecond (as `values.unix_seconds`); null where missing."""
    ints, unit = epoch_units(array)
    micros = ints * (1_000_000 // unit) if unit <= 1_000_000 else np.floor_divide(ints, 1000)
    micros_series = pl.Series(micros)
    whole = np.floor_divide(micros, 1_000_000)
    text = pl.select(
        pl.when(pl.Series(micros % 1_000_000 == 0))
        .then(pl.Series(whole).cast(_TEXT))
        .otherwise((micros_series / 1_000_000).cast(_TEXT))
    ).to_series()
    missing = missing_mask(array)
    if missing.any():
        text = pl.select(pl.when(pl.Series(~missing)).then(text)).to_series()
    return text
