"""Compiled loops over the UTF-8 bytes of text columns, where Arrow's regex kernels
are slow (a RE2 replace per value)."""

from __future__ import annotations

from numba import njit


@njit(cache=True, nogil=True)
def keep_digits(offsets, data, out_offsets, out):
    """Copy each value's ASCII digit bytes; `out_offsets` gets the new bounds."""
    at = 0
    out_offsets[0] = 0
    for row in range(len(offsets) - 1):
        for i in range(offsets[row], offsets[row + 1]):
            byte = data[i]
            if 48 <= byte <= 57:
                out[at] = byte
                at += 1
        out_offsets[row + 1] = at
    return at
