"""Latest traits per user and device tokens, from all of the user's identify rows.

Column-wise: one sort of the rows, then per column each user's latest row with a value
(one compiled pass over the rows), then one Arrow `take`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.columns import LATEST_CONTEXT_COLUMNS, ORDER_COLUMNS, custom_columns
from connect_sync.transforms.identity_columns import canonical_column
from connect_sync.transforms.kernels import kernel
from connect_sync.transforms.threads import in_parallel, parallel_map
from connect_sync.transforms.values import (
    as_arrow,
    as_series,
    as_text,
    blank_as_null,
    epoch_units,
    missing_mask,
    null_where,
    paused_gc,
    valid_mask,
)

#: Kept for callers that name the order; mapping.md: `timestamp`, `received_at`, `id`.
ORDER = list(ORDER_COLUMNS)
TOKEN_PLATFORMS = ("apns", "fcm")
TOKEN_LISTS = pd.ArrowDtype(pa.list_(pa.string()))


# -- ordering -----------------------------------------------------------------------------


def user_codes(users: pd.Series | pa.Array) -> tuple[np.ndarray, pd.Index]:
    """Integer code per row (-1 for a null or empty id) and the distinct ids as strings;
    codes follow the ids' sorted order."""
    codes, ids = _distinct_ids(users)
    order = pc.sort_indices(ids).to_numpy(zero_copy_only=False)
    rank = np.empty(len(ids) + 1, dtype=np.int64)
    rank[order] = np.arange(len(ids))
    rank[-1] = -1  # nulls
    return rank[codes], pd.Index(ids.take(pa.array(order)).to_pylist(), dtype=object)


def _distinct_ids(users: pd.Series | pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer code per row (-1 for a null or empty id) and the distinct ids, in order of
    first appearance."""
    return _distinct(blank_as_null(as_text(users)))


def chronological(frame: pd.DataFrame) -> np.ndarray:
    """Row positions in time order: `timestamp`, ties `received_at`, then `id`.

    A missing timestamp sorts first (oldest). One sort on the timestamp; only rows that tie
    on it are sorted again by the tie-breakers.
    """
    n = len(frame)
    if "timestamp" not in frame.columns:
        keys = [np.zeros(n, dtype=np.int64)]
    else:
        keys = [_time_key(frame["timestamp"])]
    if "received_at" in frame.columns:
        keys.append(_time_key(frame["received_at"]))
    order = np.argsort(keys[0])  # not stable: tied rows are put in order below
    if n < 2:
        return order
    first = keys[0][order]
    same = first[1:] == first[:-1]
    if not same.any():
        return order
    tied = np.zeros(n, dtype=bool)
    tied[1:] |= same
    tied[:-1] |= same
    positions = np.flatnonzero(tied)
    rows = order[positions]
    tiebreak = [k[rows] for k in keys]
    if "id" in frame.columns:
        tiebreak.append(_text_rank(frame["id"], rows))
    order[positions] = rows[np.lexsort([rows, *tiebreak[::-1]])]  # last: position
    return order


def _text_rank(values: pd.Series, rows: np.ndarray) -> np.ndarray:
    """The dense rank of each of `values[rows]` in text order (missing first; equal values
    rank equal, so rows tied on every key keep their order), taken and ranked in Arrow:
    converting the whole column to Python strings cost 0.3 s at 2.5M rows."""
    taken = as_text(values).take(pa.array(rows))
    rank = pc.rank(taken, sort_keys=[("", "ascending", "at_start")], tiebreaker="dense")
    return rank.to_numpy(zero_copy_only=False).astype(np.int64)


def chronological_rank(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """(order, rank): rows in time order, and each row's position in that order."""
    order = chronological(frame)
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return order, rank


def _time_key(series: pd.Series) -> np.ndarray:
    """A timestamp column as sortable int64 units since the epoch, in the column's own unit
    (nulls first). Never scaled to nanoseconds: int64 nanoseconds end in 2262, and year
    9999 in microseconds times 1000 wrapped around to sort before 1970. Each key column is
    only compared with itself, so units need not agree between columns."""
    array = as_arrow(series)
    if array is None or not (pa.types.is_timestamp(array.type) or pa.types.is_date(array.type)):
        array = pa.array(pd.to_datetime(series, utc=True, errors="coerce"))
    key, _ = epoch_units(array)  # may be read-only (zero-copy): not written in place
    missing = missing_mask(array)
    if missing.any():
        key = np.where(missing, np.iinfo(np.int64).min, key)
    return key


def _runs(sorted_codes: np.ndarray) -> np.ndarray:
    """Start positions of each run of equal codes."""
    if not len(sorted_codes):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])


# -- latest traits ------------------------------------------------------------------------


@paused_gc()
def latest_traits(
    identifies: pd.DataFrame,
    user_column: str | None = None,
    columns: list[str] | None = None,
    rank: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per user (index: the user id, sorted): per column, the latest non-null value
    (null = not sent in that call; NaN counts as null).

    Rows are ordered by `timestamp`, ties by `received_at`, then `id`. The columns are the
    trait columns and the context the identify payload reads (`context_timezone`), unless
    `columns` names others. Rows without a user id are left out. Dtypes are Arrow's, so
    integers stay integers and booleans booleans. `rank`: each row's place in time order
    (`chronological_rank`), when the caller has it. `user_column`: the canonical id's
    column, `identity_columns.CANONICAL` unless named.
    """
    user_column = user_column or canonical_column(identifies)
    if columns is None:
        columns = custom_columns(identifies.columns)
        columns = [c for c in columns if c != user_column]
        columns += [c for c in LATEST_CONTEXT_COLUMNS if c in identifies.columns]
    if rank is None:
        (codes, users), (_, rank) = in_parallel(
            lambda: user_codes(identifies[user_column]), lambda: chronological_rank(identifies)
        )
    else:
        codes, users = user_codes(identifies[user_column])
    latest_rows = kernel("latest_rows")
    index = pd.Index(users, name=user_column)
    every = latest_rows(codes, rank, np.ones(len(codes), dtype=bool), len(users))
    series = [identifies[column] for column in columns]
    latest = parallel_map(lambda s: _latest(s, codes, rank, every, index), series)
    return pd.DataFrame(dict(zip(columns, latest, strict=True)), index=index)


def _latest(
    series: pd.Series,
    codes: np.ndarray,
    rank: np.ndarray,
    every: np.ndarray,
    index: pd.Index,
) -> pd.Series:
    """The latest non-null value of each user, as an Arrow-dtype Series (`every`: each
    user's latest row)."""
    array = as_arrow(series)
    if array is None:  # an object column of mixed values
        values = series.to_numpy(dtype=object)
        valid = pd.notna(values)
    else:
        valid = ~missing_mask(array)
    rows = every if valid.all() else kernel("latest_rows")(codes, rank, valid, len(index))
    found = rows >= 0
    rows = np.where(found, rows, 0)
    if array is None:
        taken = values[rows]
        taken[~found] = None
        return pd.Series(taken, index=index, dtype=object)
    # Arrow's take is several times slower with null indices: take, then blank out.
    return as_series(null_where(array.take(pa.array(rows)), ~found), index)


# -- device tokens ------------------------------------------------------------------------


def device_platforms(identifies: pd.DataFrame) -> pd.Series:
    """`apns`, `fcm` or null per row: the device type compared case-insensitively; when it
    is null, inferred from the library name (`analytics-ios`, `analytics-android`)."""
    return as_series(_platforms(identifies), identifies.index)


_PLATFORM_NAMES = np.array([None, "apns", "fcm"], dtype=object)


def _platforms(identifies: pd.DataFrame) -> pa.Array:
    return pa.array(_PLATFORM_NAMES[_platform_codes(identifies)], pa.string())


def _platform_codes(identifies: pd.DataFrame) -> np.ndarray:
    """0 (none), 1 (`apns`) or 2 (`fcm`) per row, worked out once per distinct device type
    and library name (there are few): each is trimmed and lower-cased once."""
    n = len(identifies)
    kind_codes, kinds = _distinct(_text(identifies, "context_device_type", n))
    library_codes, libraries = _distinct(_text(identifies, "context_library_name", n))
    kinds, libraries = _cleaned(kinds), _cleaned(libraries)
    inferred = pc.if_else(
        pc.fill_null(pc.match_substring(libraries, "ios"), False),
        "ios",
        pc.if_else(pc.fill_null(pc.match_substring(libraries, "android"), False), "android", None),
    )
    typed = np.r_[valid_mask(kinds), False][kind_codes]  # a (non-blank) device type
    kind_of = _platform_of(kinds)  # per distinct device type
    inferred_of = _platform_of(inferred)  # per distinct library name
    return np.where(typed, kind_of[kind_codes], inferred_of[library_codes])


def _distinct(text: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Codes into the distinct values (-1 for null) and the distinct values."""
    encoded = pc.dictionary_encode(text)
    codes = pc.fill_null(encoded.indices, -1).to_numpy(zero_copy_only=False).astype(np.int64)
    return codes, encoded.dictionary


def _platform_of(kinds: pa.Array) -> np.ndarray:
    """Platform code per device type (`ios`, `android`), with a trailing 0 for null."""
    ios = pc.fill_null(pc.equal(kinds, "ios"), False).to_numpy(zero_copy_only=False)
    android = pc.fill_null(pc.equal(kinds, "android"), False).to_numpy(zero_copy_only=False)
    return np.r_[np.where(ios, 1, np.where(android, 2, 0)), 0].astype(np.int8)


def _text(frame: pd.DataFrame, column: str, n: int) -> pa.Array:
    """The column as Arrow text (all null when there is no such column)."""
    if column not in frame.columns:
        return pa.nulls(n, pa.string())
    return as_text(frame[column])


def _cleaned(text: pa.Array, lower: bool = True) -> pa.Array:
    """Text trimmed (and lower-cased); blank values as null."""
    text = pc.utf8_trim_whitespace(text)
    if lower:
        text = pc.utf8_lower(text)
    return blank_as_null(text)


@paused_gc()
def device_tokens(
    identifies: pd.DataFrame, user_column: str | None = None, rank: np.ndarray | None = None
) -> pd.DataFrame:
    """Per user with tokens (index: the user id), `apns` and `fcm`: every distinct token,
    newest first (Arrow lists of text; null when the user has none on that platform).
    `user_column` and `rank`: as for `latest_traits`."""
    user_column = user_column or canonical_column(identifies)
    empty = pd.DataFrame(
        {p: pd.Series([], dtype=TOKEN_LISTS) for p in TOKEN_PLATFORMS},
        index=pd.Index([], name=user_column, dtype=object),
    )
    if "context_device_token" not in identifies.columns or identifies.empty:
        return empty
    token = _text(identifies, "context_device_token", len(identifies))
    sent = np.flatnonzero(valid_mask(token))  # trimmed below, only where sent
    token = _cleaned(token.take(pa.array(sent)), lower=False)
    with_token = sent[valid_mask(token)]
    token = token.filter(token.is_valid())
    needed = [user_column, "context_device_type", "context_library_name"]
    if rank is None:
        needed += ORDER_COLUMNS
    frame = identifies[[c for c in needed if c in identifies.columns]].iloc[with_token]
    if rank is None:
        (platform, (codes, users)), (_, rank) = in_parallel(
            lambda: (_platform_codes(frame), _distinct_ids(frame[user_column])),
            lambda: chronological_rank(frame),
        )
    else:  # a row's rank among all rows orders it among these too
        platform, (codes, users) = in_parallel(
            lambda: _platform_codes(frame), lambda: _distinct_ids(frame[user_column])
        )
        rank = rank[with_token]
    usable = np.flatnonzero((platform > 0) & (codes >= 0))
    if not len(usable):
        return empty
    is_fcm = (platform == 2).astype(np.int64)
    m = len(identifies)  # above every rank
    # One sort: by user, platform, then newest first (the keys are distinct).
    group = codes[usable] * 2 + is_fcm[usable]
    order = usable[np.argsort(group * m + (m - 1 - rank[usable]))]
    group = codes[order] * 2 + is_fcm[order]
    tokens = token.take(pa.array(order))
    token_codes = pc.dictionary_encode(tokens).indices.to_numpy(zero_copy_only=False)
    first = ~pd.Index(group * (len(tokens) + 1) + token_codes).duplicated()
    tokens = tokens.filter(pa.array(first))
    group = group[first]
    starts = _runs(group)  # one run per user and platform: that user's list there
    lists = pa.ListArray.from_arrays(pa.array(np.r_[starts, len(group)].astype(np.int32)), tokens)
    owner = group[starts] // 2  # sorted
    present = owner[_runs(owner)]
    position = np.cumsum(np.r_[False, owner[1:] != owner[:-1]])  # each run's user, 0..
    out = {}
    for name, on_platform in (("apns", group[starts] % 2 == 0), ("fcm", group[starts] % 2 == 1)):
        run = np.full(len(present), -1, dtype=np.int64)
        run[position[on_platform]] = np.flatnonzero(on_platform)
        out[name] = as_series(lists.take(pa.array(run, mask=run < 0)))
    index = pd.Index(pd.arrays.ArrowExtensionArray(users.take(pa.array(present))))
    return pd.DataFrame(out).set_axis(index.rename(user_column))
