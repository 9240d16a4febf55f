"""Time slices of a message table's window: runs of whole hours of event time holding about
`per_slice` rows each, so a message stream (events, pages, screens) holds one slice's rows
at a time and still sends them in the order of one whole-window pass.

A stream sends messages oldest first (`timestamp`, then `received_at`, then `id`; a missing
time first). Slices cut only between hours of `timestamp`, and rows without a time go in
the first slice, so the slices in order, each put in time order, are the window in time
order. The slices' bounds are the hours the warehouse returned: consecutive slices share a
bound and the first and last are open, so every row of the window is in exactly one slice,
whatever the column's type or the session's time zone.

A message stored twice with event times in two slices is read in both; `SeenMessages`
keeps what an earlier slice sent so a later one can leave it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import pairwise

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from connect_sync.transforms.values import as_arrow


@dataclass(frozen=True)
class TimeSlice:
    """Rows whose event time lies in [lo, hi): `lo` None from the start (rows without a
    time included), `hi` None to the end. `rows` is how many the warehouse counted."""

    lo: datetime | None
    hi: datetime | None
    rows: int

    @property
    def params(self) -> dict[str, object]:
        """The bound parameters of the `*_in_slice` statements (an open bound still binds
        a time, which the statement ignores)."""
        some = self.lo or self.hi or datetime(1970, 1, 1, tzinfo=UTC)
        return {
            "lo": self.lo or some,
            "hi": self.hi or some,
            "from_start": self.lo is None,
            "to_end": self.hi is None,
        }


#: One slice holding the whole window (no bound at all).
WHOLE_WINDOW = TimeSlice(None, None, 0)


def time_slices(hours: pd.DataFrame, per_slice: int) -> list[TimeSlice]:
    """The window cut into slices of whole hours holding about `per_slice` rows each.

    `hours` has one row per `hour` (a time; null for rows without one) with its `n_rows`,
    in any order. A slice ends before the hour whose rows cross the next multiple of
    `per_slice`, so it holds less than `per_slice` rows plus its last hour's. One slice
    (`WHOLE_WINDOW`, with the count) when they all fit in one."""
    total = int(hours["n_rows"].sum()) if len(hours) else 0
    if total <= per_slice:
        return [TimeSlice(None, None, total)]
    stamps = _utc(hours["hour"])
    timed = stamps.notna().to_numpy(dtype=bool)
    untimed = int(hours["n_rows"].to_numpy()[~timed].sum())
    order = np.argsort(stamps[timed].to_numpy(dtype="datetime64[us]"), kind="stable")
    starts = stamps[timed].iloc[order].reset_index(drop=True)
    # the rows without a time first, then each hour's, in time order
    counts = np.concatenate([[untimed], hours["n_rows"].to_numpy(dtype=np.int64)[timed][order]])
    before = np.cumsum(counts) - counts  # rows before each group
    cut = np.flatnonzero(np.diff(before // max(per_slice, 1))) + 1  # groups that start a slice
    bounds = [None, *(starts[i - 1].to_pydatetime() for i in cut), None]
    edges = np.concatenate([[0], cut, [len(counts)]])
    sizes = [int(counts[a:b].sum()) for a, b in pairwise(edges)]
    return [TimeSlice(bounds[k], bounds[k + 1], sizes[k]) for k in range(len(sizes))]


def _utc(values: pd.Series) -> pd.Series:
    """Hours as UTC times (a warehouse without zones returns UTC wall times)."""
    return pd.to_datetime(pd.Series(values.astype(object).tolist()), utc=True, errors="coerce")


class SeenMessages:
    """The message ids sent by earlier slices, as sorted 64-bit hashes (8 bytes an id,
    not a Python string). A hit may be another id with the same hash: callers confirm
    hits before leaving a message out (`MessageStream`)."""

    def __init__(self) -> None:
        self._hashes = np.zeros(0, dtype=np.uint64)

    def __len__(self) -> int:
        return len(self._hashes)

    def add(self, ids: pd.Series) -> None:
        self._hashes = np.union1d(self._hashes, message_hashes(ids))

    def hits(self, ids: pd.Series) -> np.ndarray:
        """True for each id whose hash an earlier `add` saw."""
        if not len(self._hashes) or not len(ids):
            return np.zeros(len(ids), dtype=bool)
        hashes = message_hashes(ids)
        at = np.searchsorted(self._hashes, hashes).clip(max=len(self._hashes) - 1)
        return self._hashes[at] == hashes


def message_hashes(ids: pd.Series) -> np.ndarray:
    """A 64-bit hash of each id's text (polars, every core; stable within a process)."""
    array = as_arrow(ids)
    if array is None:
        array = pa.array(ids.astype("string"))
    return pl.Series(array).hash(seed=0).to_numpy()
