"""Buckets of canonical users: sorted runs of about `per_bucket` rows, covering each user
once."""

from __future__ import annotations

import numpy as np
import pandas as pd
from connect_sync.transforms.buckets import (
    AUTO_BUCKET_CELLS,
    MIN_AUTO_BUCKET_ROWS,
    bucket_rows,
    user_buckets,
)
from hypothesis import given
from hypothesis import strategies as st


def test_automatic_size_follows_the_width_of_the_table() -> None:
    assert bucket_rows(1234, 20) == 1234
    assert bucket_rows(0, 20) == AUTO_BUCKET_CELLS // 20
    assert bucket_rows(0, 120) < bucket_rows(0, 20)
    assert bucket_rows(0, 10**6) == MIN_AUTO_BUCKET_ROWS


def test_ids_of_one_user_count_together_and_nulls_are_left_out() -> None:
    canonical = pd.Series(["b", "a", "b", None, "c"], dtype=object)
    buckets = user_buckets(canonical, np.array([2, 1, 2, 9, 1]), per_bucket=3)
    assert buckets.users.to_pylist() == ["a", "b", "c"]
    assert [buckets[k] for k in range(len(buckets))] == [["a", "b"], ["c"]]


def test_no_users_no_buckets() -> None:
    assert len(user_buckets(pd.Series([], dtype=object), np.array([]), 5)) == 0


@given(
    st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(1, 9)), max_size=40),
    st.integers(1, 30),
)
def test_buckets_are_sorted_runs_covering_every_user_once(pairs, per_bucket) -> None:
    canonical = pd.Series([p[0] for p in pairs], dtype=object)
    rows = np.array([p[1] for p in pairs], dtype=np.int64)
    buckets = user_buckets(canonical, rows, per_bucket)
    joined = [u for k in range(len(buckets)) for u in buckets[k]]
    assert joined == sorted(set(canonical))
    per_user = pd.Series(rows).groupby(canonical.to_numpy()).sum()
    for k in range(len(buckets)):
        users = list(buckets[k])
        assert users
        # a bucket holds at most per_bucket rows, unless one user alone has more
        assert len(users) == 1 or per_user[users[:-1]].sum() < per_bucket
