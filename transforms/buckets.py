"""Buckets of canonical users: runs of users in sorted order holding about `bucket_rows`
warehouse rows each, so a stream holds one bucket's rows at a time and still sends its
payloads in the order of one whole-table pass (sorted by canonical id)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

#: Rows times columns one bucket holds when the size is automatic: 10M cells is about
#: 500k rows of a narrow (20-column) `identifies` table and 100k of a 100-trait one.
AUTO_BUCKET_CELLS = 10_000_000
#: The fewest rows an automatic bucket holds (each bucket is one more read of the table).
MIN_AUTO_BUCKET_ROWS = 50_000


def bucket_rows(setting: int, columns: int) -> int:
    """Rows per bucket: the setting, or (0) AUTO_BUCKET_CELLS spread over the columns."""
    if setting > 0:
        return setting
    return max(MIN_AUTO_BUCKET_ROWS, AUTO_BUCKET_CELLS // max(columns, 1))


@dataclass(frozen=True)
class Buckets:
    """Canonical users (sorted, unique, Arrow strings) cut into runs: bucket k is
    `users[starts[k]:starts[k + 1]]`."""

    users: pa.Array
    starts: np.ndarray

    def __len__(self) -> int:
        return len(self.starts) - 1

    def __getitem__(self, k: int) -> list[str]:
        start, end = int(self.starts[k]), int(self.starts[k + 1])
        return self.users.slice(start, end - start).to_pylist()


def user_buckets(
    canonical_ids: pd.Series, rows: pd.Series | np.ndarray, per_bucket: int
) -> Buckets:
    """The canonical users of `canonical_ids` (one entry per warehouse id, with its row count
    in `rows`; nulls left out), sorted, in runs of about `per_bucket` rows: a new bucket
    starts at the user whose rows cross the next multiple of `per_bucket`, so a bucket
    holds less than `per_bucket` rows plus its last user's."""
    ids = pa.array(canonical_ids.to_numpy(dtype=object, na_value=None), type=pa.string())
    known = np.asarray(ids.is_valid())
    counts = np.asarray(rows, dtype=np.int64)[known]
    encoded = pc.dictionary_encode(ids.filter(pa.array(known)))
    distinct = encoded.dictionary
    order = np.asarray(pc.sort_indices(distinct))
    rank = np.empty(len(distinct), dtype=np.int64)
    rank[order] = np.arange(len(distinct))
    codes = rank[np.asarray(encoded.indices)]
    per_user = np.bincount(codes, weights=counts, minlength=len(distinct)).astype(np.int64)
    before = np.cumsum(per_user) - per_user  # rows of the users before each one
    bucket = before // max(per_bucket, 1)
    cuts = np.flatnonzero(np.diff(bucket)) + 1
    starts = np.concatenate([[0], cuts, [len(distinct)]]).astype(np.int64)
    if len(distinct) == 0:
        starts = np.array([0], dtype=np.int64)
    return Buckets(distinct.take(pa.array(order)), starts)
