"""Compiled one-pass loops that pick a row per group: each user's latest row with a value
(`traits.latest_traits`), each id's latest link (`identity`)."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def latest_rows(codes, rank, valid, n_users):
    """Per user code, the row with the highest `rank` among the rows of that code where
    `valid`; -1 for a user without one. Rows with a negative code are left out.

    One pass over the rows (numpy's `maximum.at` on the filtered rows and the gathers
    around it cost about twice as much).
    """
    best = np.full(n_users, -1, dtype=np.int64)
    rows = np.full(n_users, -1, dtype=np.int64)
    for row in range(len(codes)):
        code = codes[row]
        if code < 0 or not valid[row]:
            continue
        if rank[row] > best[code]:
            best[code] = rank[row]
            rows[code] = row
    return rows


@njit(cache=True, nogil=True)
def last_by_keys(groups, keys, n_groups):
    """Per group, the position with the largest keys (`keys[k, position]`, k = 0 most
    significant); of positions with equal keys, the last. -1 for a group without one.

    What `np.lexsort` (stable) by group then keys, taking each group's last, picks: in
    one pass instead of a sort (0.5 s for the 1.75M links of a 1M-user warehouse).
    """
    best = np.full(n_groups, -1, dtype=np.int64)
    for position in range(len(groups)):
        group = groups[position]
        held = best[group]
        if held >= 0:
            later = True  # equal keys: the later position wins
            for k in range(keys.shape[0]):
                if keys[k, position] != keys[k, held]:
                    later = keys[k, position] > keys[k, held]
                    break
            if not later:
                continue
        best[group] = position
    return best
