"""Column helpers the streams use on the rows they read: their times, and where an event's
properties are (who a row is: `transforms.identity_columns`). Pure Arrow/pandas."""

from __future__ import annotations

from collections import Counter
from datetime import datetime

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.events import property_texts
from connect_sync.transforms.values import as_text


def utc_times(values: pd.Series) -> pd.Series:
    """UTC timestamps from any column the drivers return (all-null columns included)."""
    if isinstance(values.dtype, pd.ArrowDtype) and values.dtype.pyarrow_dtype == pa.null():
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if _is_utc_arrow(values):
        return values  # the warehouse readers' type: converting it would cost seconds
    return pd.to_datetime(values, utc=True)


def _is_utc_arrow(values: pd.Series) -> bool:
    dtype = values.dtype
    return (
        isinstance(dtype, pd.ArrowDtype)
        and pa.types.is_timestamp(dtype.pyarrow_dtype)
        and dtype.pyarrow_dtype.tz in ("UTC", "+00:00", "Etc/UTC")
    )


def newest(
    frame: pd.DataFrame | None, column: str, rows: np.ndarray | None = None
) -> datetime | None:
    """The newest time in `column` (of the `rows` where True, when given)."""
    if frame is None or frame.empty or column not in frame.columns:
        return None
    values = frame[column] if rows is None else frame[column][rows]
    value = utc_times(values).max()
    return None if pd.isna(value) else value.to_pydatetime()


def property_rows(
    tracks: pd.DataFrame, tables: dict[str, pa.Table]
) -> tuple[np.ndarray, np.ndarray]:
    """Per track, which event table holds its properties (index into `tables`, -1 none)
    and the row there: one hash lookup per table for the whole window."""
    table_of = np.full(len(tracks), -1, dtype=np.int64)
    row_of = np.full(len(tracks), -1, dtype=np.int64)
    if not tables or tracks.empty:
        return table_of, row_of
    ids = as_text(tracks["id"])
    names = pa.array(list(tables), pa.string())
    which = pc.index_in(as_text(tracks["event"]), value_set=names)  # one pass
    which = np.asarray(pc.fill_null(which, -1), dtype=np.int64)
    for code, table in enumerate(tables.values()):
        where = np.flatnonzero(which == code)
        if not len(where):
            continue
        found = pc.index_in(ids.take(pa.array(where)), value_set=as_text(table.column("id")))
        rows = np.asarray(pc.fill_null(found, -1), dtype=np.int64)
        table_of[where[rows >= 0]] = code
        row_of[where] = rows
    return table_of, row_of


def chunk_properties(
    tables: dict[str, pa.Table],
    names: list[str],
    table_of: np.ndarray,
    row_of: np.ndarray,
    quality: Counter[str] | None = None,
) -> pa.Array | None:
    """The properties (JSON text) of each message of one chunk, in the chunk's order:
    each event table's rows are taken and written once (null: no properties); values left
    out are counted in `quality` by reason."""
    parts, where = [], []
    for code in np.unique(table_of[table_of >= 0]):
        at = np.flatnonzero(table_of == code)
        rows = tables[names[code]].take(pa.array(row_of[at]))
        parts.append(property_texts(rows.to_pandas(types_mapper=pd.ArrowDtype), quality))
        where.append(at)
    if not parts:
        return None
    texts = pa.concat_arrays([*parts, pa.nulls(1, pa.string())])
    position = np.full(len(table_of), len(texts) - 1, dtype=np.int64)
    position[np.concatenate(where)] = np.arange(len(texts) - 1)
    return texts.take(pa.array(position))
