"""Compiled loops that write JSON objects row by row from column buffers (without the
GIL, so other columns' work goes on meanwhile).

`object_bounds` measures every row's `{"key":value,...}` and `write_objects` then writes
them all into one buffer, front to back. Each field is
one of the kinds below, its values Arrow-style buffers: offsets into UTF-8 bytes, or int64
values (booleans as 0/1). Values are written as orjson writes them: text quoted, with `"`,
`\\` and control characters escaped (`\\n`, `\\u001f`, ...), integers in decimal.
"""

from __future__ import annotations

import numpy as np
from connect_sync.transforms.json_kinds import BOOL, ESCAPED, INT, QUOTED, RAW  # noqa: F401
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

_QUOTE, _BACKSLASH, _COMMA = 34, 92, 44
_TRUE = np.frombuffer(b"true", dtype=np.uint8)
_FALSE = np.frombuffer(b"false", dtype=np.uint8)
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
#: The short escapes orjson writes, by control character (0: written as `\\u00XX`).
_SHORT = np.zeros(32, dtype=np.uint8)
_SHORT[[8, 9, 10, 12, 13]] = np.frombuffer(b"btnfr", dtype=np.uint8)


@intrinsic
def _memcpy(typingctx, out, at, source, start, count):
    """`out[at:at + count] = source[start:start + count]` as one `memcpy` (a loop of byte
    moves or a slice assignment, which checks for overlap, is several times slower)."""

    def codegen(context, builder, signature, arguments):
        out_value, at_value, source_value, start_value, count_value = arguments
        into = context.make_array(signature.args[0])(context, builder, out_value).data
        from_ = context.make_array(signature.args[2])(context, builder, source_value).data
        target = builder.gep(into, [at_value])
        origin = builder.gep(from_, [start_value])
        cgutils.raw_memcpy(builder, target, origin, count_value, 1)
        return context.get_dummy_value()

    return types.void(out, at, source, start, count), codegen


@njit(cache=True, inline="always")
def _copy(out, at, source, start, end, write):
    """`source[start:end]` at `at`; the position after it."""
    if write:
        _memcpy(out, at, source, start, end - start)
    return at + end - start


@njit(cache=True, inline="always")
def _escaped(out, at, data, start, end, write):
    """`data[start:end]` with `"`, `\\` and control characters escaped as orjson does."""
    for i in range(start, end):
        byte = data[i]
        if byte >= 32 and byte != _QUOTE and byte != _BACKSLASH:
            if write:
                out[at] = byte
            at += 1
        elif byte >= 32 or _SHORT[byte] != 0:
            if write:
                out[at] = _BACKSLASH
                out[at + 1] = byte if byte >= 32 else _SHORT[byte]
            at += 2
        else:
            if write:
                out[at] = _BACKSLASH
                out[at + 1] = 117  # u
                out[at + 2] = 48
                out[at + 3] = 48
                out[at + 4] = _HEX[byte >> 4]
                out[at + 5] = _HEX[byte & 15]
            at += 6
    return at


@njit(cache=True, inline="always")
def _string(out, at, data, start, end, escape, write):
    """`data[start:end]` as a quoted JSON string (escaped when `escape`)."""
    if write:
        out[at] = _QUOTE
    if escape:
        at = _escaped(out, at + 1, data, start, end, write)
    else:
        at = _copy(out, at + 1, data, start, end, write)
    if write:
        out[at] = _QUOTE
    return at + 1


@njit(cache=True, inline="always")
def _integer(out, at, value, digits, write):
    """An int64 in decimal; `digits` is scratch space for 20 digits."""
    if value < 0:
        if write:
            out[at] = 45  # -
        at += 1
        magnitude = np.uint64(-(value + 1)) + np.uint64(1)  # also for the int64 minimum
    else:
        magnitude = np.uint64(value)
    count = 0
    while True:
        digits[count] = 48 + magnitude % np.uint64(10)
        magnitude //= np.uint64(10)
        count += 1
        if magnitude == 0:
            break
    if write:
        for i in range(count):
            out[at + i] = digits[count - 1 - i]
    return at + count


@njit(cache=True, inline="always")
def _row(
    out, at, row, kinds, slots, heads, head_offsets, present, numbers, offsets, data, digits, write
):
    """One object, `{` to `}`, from `at`; the position after it."""
    if write:
        out[at] = 123  # {
    at += 1
    start = at
    for field in range(len(kinds)):
        if not present[row, field]:
            continue
        # `,"key":` (and the opening quote of a string); no comma before the first member
        first = head_offsets[field] + (1 if at == start else 0)
        at = _copy(out, at, heads, first, head_offsets[field + 1], write)
        kind, slot = kinds[field], slots[field]
        if kind == INT:
            at = _integer(out, at, numbers[row, slot], digits, write)
        elif kind == BOOL:
            if numbers[row, slot]:
                at = _copy(out, at, _TRUE, 0, 4, write)
            else:
                at = _copy(out, at, _FALSE, 0, 5, write)
        else:
            begin, end = offsets[row, slot], offsets[row + 1, slot]
            if kind == ESCAPED:
                at = _escaped(out, at, data, begin, end, write)
            else:
                at = _copy(out, at, data, begin, end, write)
            if kind != RAW:
                if write:
                    out[at] = _QUOTE
                at += 1
    if write:
        out[at] = 125  # }
    return at + 1


@njit(cache=True, nogil=True)
def object_bounds(kinds, slots, heads, head_offsets, present, numbers, offsets, data):
    """Where each row's JSON object starts and ends in the output of `write_objects` (which
    takes the same arguments, after the output and these bounds)."""
    n = present.shape[0]
    digits = np.empty(20, dtype=np.uint8)
    bounds = np.empty(n + 1, dtype=np.int64)
    bounds[0] = 0
    none = np.empty(0, dtype=np.uint8)
    for row in range(n):
        bounds[row + 1] = _row(
            none,
            bounds[row],
            row,
            kinds,
            slots,
            heads,
            head_offsets,
            present,
            numbers,
            offsets,
            data,
            digits,
            False,
        )
    return bounds


@njit(cache=True, nogil=True)
def write_objects(out, bounds, kinds, slots, heads, head_offsets, present, numbers, offsets, data):
    """Write one JSON object per row into `out[bounds[r]:bounds[r + 1]]`, `{}` where no
    field is present.

    Field `f` is present in row `r` where `present[r, f]`. It starts with
    `heads[head_offsets[f]:head_offsets[f + 1]]`: `,"key":`, and `"` when its value is
    written as a string. Its value, by `kinds[f]`, is `numbers[r, slots[f]]` or the bytes
    `data[offsets[r, slots[f]]:offsets[r + 1, slots[f]]]`. (The caller allocates `out`:
    a buffer numba allocates pays its page faults anew each time, which costs more than
    writing it.)
    """
    digits = np.empty(20, dtype=np.uint8)
    for row in range(present.shape[0]):
        _row(
            out,
            bounds[row],
            row,
            kinds,
            slots,
            heads,
            head_offsets,
            present,
            numbers,
            offsets,
            data,
            digits,
            True,
        )


@njit(cache=True, inline="always")
def _list(out, at, lists, row, offsets, data, escape, write):
    """`["text",...]` of one row; the position after it."""
    if write:
        out[at] = 91  # [
    at += 1
    for item in range(lists[row], lists[row + 1]):
        if item != lists[row]:
            if write:
                out[at] = _COMMA
            at += 1
        at = _string(out, at, data, offsets[item], offsets[item + 1], escape, write)
    if write:
        out[at] = 93  # ]
    return at + 1


@njit(cache=True, nogil=True)
def list_bounds(present, lists, offsets, data, escape):
    """Where each row's JSON array starts and ends in the output of `write_lists` (which
    takes the same arguments, after the output and these bounds)."""
    n = len(present)
    bounds = np.zeros(n + 1, dtype=np.int64)
    none = np.empty(0, dtype=np.uint8)
    for row in range(n):
        at = bounds[row]
        if present[row]:
            at = _list(none, at, lists, row, offsets, data, escape, False)
        bounds[row + 1] = at
    return bounds


@njit(cache=True, nogil=True)
def write_lists(out, bounds, present, lists, offsets, data, escape):
    """Write a JSON array of strings into `out[bounds[r]:bounds[r + 1]]` for each row `r`
    where `present`: the texts `lists[r]` to `lists[r + 1]` (no nulls) of `data`."""
    for row in range(len(present)):
        if present[row]:
            _list(out, bounds[row], lists, row, offsets, data, escape, True)
