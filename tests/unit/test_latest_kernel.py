"""The compiled loops against the numpy they replace, on the same rows."""

from __future__ import annotations

import numpy as np
from connect_sync.transforms.identity import _last_per_group
from connect_sync.transforms.latest_kernel import latest_rows
from hypothesis import given, settings
from hypothesis import strategies as st


def numpy_latest_rows(codes, rank, valid, n_users):
    rows = np.flatnonzero(valid & (codes >= 0))
    best = np.full(n_users, -1, dtype=np.int64)
    np.maximum.at(best, codes[rows], rank[rows])
    order = np.argsort(rank)
    return np.where(best >= 0, order[np.maximum(best, 0)] if len(order) else best, -1)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_latest_rows_equal_numpy(data):
    n = data.draw(st.integers(0, 40))
    n_users = data.draw(st.integers(1, 6))
    codes = np.array(data.draw(st.lists(st.integers(-1, n_users - 1), min_size=n, max_size=n)))
    rank = np.array(data.draw(st.permutations(range(n))), dtype=np.int64)
    valid = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), dtype=bool)
    codes = codes.astype(np.int64)
    expected = numpy_latest_rows(codes, rank, valid, n_users)
    assert latest_rows(codes, rank, valid, n_users).tolist() == expected.tolist()


def test_no_rows_and_users_without_a_value():
    empty = np.zeros(0, dtype=np.int64)
    assert latest_rows(empty, empty, np.zeros(0, dtype=bool), 2).tolist() == [-1, -1]
    codes = np.array([0, 1, 0, -1])
    rank = np.array([2, 0, 1, 3])
    valid = np.array([True, False, True, True])
    assert latest_rows(codes, rank, valid, 3).tolist() == [0, -1, -1]


def lexsort_last_per_group(groups, *keys):
    """The sort the kernel replaces: stable by group then keys, each group's last."""
    order = np.lexsort((*reversed(keys), groups))
    sorted_groups = groups[order]
    last = np.ones(len(order), dtype=bool)
    last[:-1] = sorted_groups[1:] != sorted_groups[:-1]
    return order[last]


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_last_per_group_equals_the_lexsort(data):
    """Ties on every key included: the later position wins, as in a stable sort."""
    n = data.draw(st.integers(0, 40))
    column = st.lists(st.integers(0, 3), min_size=n, max_size=n)
    groups = np.array(data.draw(column), dtype=np.int64)
    keys = [
        np.array(data.draw(column), dtype=np.int64) for _ in range(data.draw(st.integers(0, 3)))
    ]
    expected = lexsort_last_per_group(groups, *keys)
    assert _last_per_group(groups, *keys).tolist() == expected.tolist()
