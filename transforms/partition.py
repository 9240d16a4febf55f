"""Partitioning by canonical user: a stable hash of the canonical id, modulo P.

`pd.util.hash_pandas_object` hashes strings with SipHash under a fixed key, so the same id
lands in the same partition in every process, on every machine and across pandas string
dtypes (object, `str`, Arrow). Null ids (rows without any id) all go to partition 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def partition_of(canonical_ids: pd.Series, partitions: int) -> np.ndarray:
    """The partition (0..partitions-1) of each canonical id, vectorized."""
    if partitions < 1:
        raise ValueError("partitions must be at least 1")
    if partitions == 1 or len(canonical_ids) == 0:
        return np.zeros(len(canonical_ids), dtype=np.int64)
    values = canonical_ids.astype(object)
    missing = values.isna().to_numpy(dtype=bool)
    hashes = pd.util.hash_pandas_object(values.where(~missing, ""), index=False).to_numpy()
    out = (hashes % np.uint64(partitions)).astype(np.int64)
    out[missing] = 0
    return out


def in_partition(canonical_ids: pd.Series, partition: int, partitions: int) -> pd.Series:
    """Which rows belong to `partition` of `partitions` (a boolean Series on the same index)."""
    chosen = partition_of(canonical_ids, partitions) == partition
    return pd.Series(chosen, index=canonical_ids.index)
