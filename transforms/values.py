"""Column values as JSON-ready Python values, keeping their warehouse type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ISO_UTC = "%Y-%m-%dT%H:%M:%SZ"


def is_timestamp(series: pd.Series) -> bool:
    dtype = series.dtype
    if isinstance(dtype, pd.ArrowDtype):
        import pyarrow as pa

        return pa.types.is_timestamp(dtype.pyarrow_dtype) or pa.types.is_date(dtype.pyarrow_dtype)
    return pd.api.types.is_datetime64_any_dtype(dtype)


def to_utc(series: pd.Series) -> pd.Series:
    """A timestamp column as UTC (naive values are taken as UTC, as Segment writes them)."""
    return pd.to_datetime(series, utc=True)


def iso_utc(series: pd.Series) -> pd.Series:
    """Timestamps as ISO-8601 UTC strings with second precision: `2024-05-01T12:00:00Z`."""
    return to_utc(series).dt.floor("s").dt.strftime(ISO_UTC)


def unix_seconds(series: pd.Series) -> pd.Series:
    """Timestamps as (possibly fractional) Unix seconds."""
    epoch = pd.Timestamp(0, tz="UTC")
    return (to_utc(series) - epoch).dt.total_seconds()


def python_values(series: pd.Series) -> list[Any]:
    """The column as Python values, None for null, NaN and empty strings.

    Integers stay int, booleans bool, floats float, timestamps become ISO-8601 UTC strings.
    """
    if is_timestamp(series):
        series = iso_utc(series)
    values = series.astype(object)
    missing = series.isna().to_numpy(dtype=bool, na_value=True)
    if pd.api.types.is_string_dtype(series.dtype) or series.dtype == object:
        empty = (series.astype("string") == "").fillna(False).to_numpy(dtype=bool)
        missing = missing | empty
    out = values.tolist()
    for index in np.flatnonzero(missing):
        out[index] = None
    return [_plain(v) for v in out] if series.dtype == object else out


def _plain(value: Any) -> Any:
    """numpy scalars as Python scalars (object columns can hold them)."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and value != value:  # NaN
        return None
    return value
