"""Digits of text columns, byte-wise (the loop is `text_kernels.keep_digits`)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.kernels import kernel
from connect_sync.transforms.values import text_buffers


def ascii_digits(text: pa.Array) -> pa.Array:
    """Each value with every character but the digits 0-9 removed; null stays null.

    Byte-wise, which is exact for UTF-8: every byte of a non-ASCII character is >= 0x80.
    Same as `pc.replace_substring_regex(text, "[^0-9]", "")`, about 20x faster.
    """
    offsets, data = text_buffers(text)
    out_offsets = np.empty(len(text) + 1, dtype=np.int64)
    out = np.empty(max(int(offsets[-1] - offsets[0]), 1), dtype=np.uint8)
    size = kernel("keep_digits")(offsets, data, out_offsets, out)
    validity = pc.is_valid(text).buffers()[1] if text.null_count else None
    buffers = [validity, pa.py_buffer(out_offsets), pa.py_buffer(out[:size])]
    digits = pa.Array.from_buffers(pa.large_string(), len(text), buffers, text.null_count)
    return digits.cast(pa.string())
