"""The compiled loop of `traits.latest_traits`: each user's latest row with a value."""

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
