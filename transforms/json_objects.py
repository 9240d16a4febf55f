"""JSON objects for many rows at once, written column-wise as UTF-8 bytes (no dict per row).

Each field is turned into Arrow-style buffers once (text offsets and bytes, int64 values,
booleans, where the key is present), then compiled loops (`transforms.json_kernels`) write
every row's `"key":value` members into one buffer, keys in sorted order at every level: a
first pass measures each row, a second writes it. Values are written as orjson writes
them (integers, `true`/`false`, floats in their shortest round-trip form as orjson itself
formats a numpy array of them, strings with the same escapes), so an object's bytes equal
`orjson.dumps(record, option=orjson.OPT_SORT_KEYS)` of the dict `values.records` builds
from the same fields: the change-detection fingerprints of earlier runs stay valid.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from functools import partial
from itertools import compress
from typing import NamedTuple

import numpy as np
import orjson
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.json_kinds import BOOL, ESCAPED, INT, QUOTED, RAW
from connect_sync.transforms.kernels import kernel
from connect_sync.transforms.values import (
    Field,
    decimal_json_text,
    epoch_units,
    missing_mask,
    text_buffers,
)


def _exact(value: object) -> orjson.Fragment:
    """orjson's `default`: a Decimal (inside a list or object) written from its digits."""
    if isinstance(value, Decimal):
        return orjson.Fragment(decimal_json_text(pa.array([value])).to_pylist()[0])
    raise TypeError(f"{type(value).__name__} has no JSON form")


_DUMPS_SORTED = partial(orjson.dumps, option=orjson.OPT_SORT_KEYS, default=_exact)
#: Nested values: maps' keys may be numbers (written as text, as JSON keys must be).
_DUMPS_NESTED = partial(
    orjson.dumps, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS, default=_exact
)
_TEXT = pl.String


def _scalar(kind: pa.DataType) -> bool:
    return (
        pa.types.is_integer(kind)
        or pa.types.is_boolean(kind)
        or pa.types.is_string(kind)
        or pa.types.is_large_string(kind)
    )


def _written_by_polars(kind: pa.DataType) -> bool:
    """Lists whose JSON text polars writes exactly as orjson does (of integers, booleans or
    text)."""
    return (pa.types.is_list(kind) or pa.types.is_large_list(kind)) and _scalar(kind.value_type)


def python_json(values: Sequence[object], missing: np.ndarray, *, nested: bool = False) -> pa.Array:
    """JSON text of Python values by orjson (keys sorted), null where `missing`; `nested`:
    values from Arrow lists, structs and maps (map keys of any scalar type)."""
    dumps = _DUMPS_NESTED if nested else _DUMPS_SORTED
    texts = pa.array(list(map(dumps, compress(values, ~missing))), pa.binary())
    where = pa.array(np.cumsum(~missing) - 1, mask=missing)
    taken = texts.take(where) if len(texts) else pa.nulls(len(values), pa.binary())
    return taken.cast(pa.string())


def _series(array: pa.Array) -> pl.Series:
    series = pl.from_arrow(array)
    assert isinstance(series, pl.Series)
    return series


def _plain_text(array: pa.Array) -> bool:
    """Whether no string of the array needs a JSON escape: no control character, `"` or
    `\\` (92) in its whole data buffer (UTF-8 multi-byte sequences never contain them; a
    stray byte outside the values only costs the escaping path)."""
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        return False
    data = array.buffers()[2]
    if data is None or data.size == 0:
        return True
    octets = np.frombuffer(data, dtype=np.uint8)
    return octets.min() >= 0x20 and not (octets == ord('"')).any() and not (octets == 92).any()


_NO_BYTES = np.frombuffer(b"", dtype=np.uint8)
_INT64_MAX = np.iinfo(np.int64).max


class _Member(NamedTuple):
    """One field as the kernel reads it: a `json_kernels` kind, the bytes of `"key":`,
    where it is present, and its values (int64 values, or int64 offsets into `data`)."""

    kind: int
    key: bytes
    present: np.ndarray
    values: np.ndarray
    data: np.ndarray = _NO_BYTES


def _empty(shape: int | tuple[int, ...], dtype: type) -> np.ndarray:
    """An uninitialized array in Arrow's memory pool, which keeps freed memory for the next
    buffers: a new numpy array of 100 MB pays its page faults again (and the kernel may
    stall to compact memory for the huge pages numpy asks for)."""
    kind = np.dtype(dtype)
    buffer = pa.allocate_buffer(int(np.prod(shape)) * kind.itemsize)
    return np.frombuffer(buffer, dtype=kind).reshape(shape)


def _member(field: Field) -> _Member | None:
    """The field as the kernel reads it; None when no row has its key."""
    key = orjson.dumps(field.key) + b":"
    values, missing = field.values, field.missing
    if isinstance(values, pl.Series):
        values = values.cast(_TEXT).to_arrow() if field.encoded else values.to_arrow()
    elif not isinstance(values, pa.Array):
        return _text_member(RAW, key, python_json(values, missing), ~missing)
    present = ~missing
    if values.null_count:
        present &= values.is_valid().to_numpy(zero_copy_only=False)
    kind = values.type
    if field.encoded:
        return _text_member(RAW, key, values, present)
    if pa.types.is_null(kind) or not present.any():
        return None
    if pa.types.is_boolean(kind):
        flags = pc.fill_null(values, False).to_numpy(zero_copy_only=False)
        return _Member(BOOL, key, present, flags.astype(np.int64))
    if pa.types.is_integer(kind):
        if pa.types.is_uint64(kind) and pc.max(values).as_py() > _INT64_MAX:
            return _text_member(RAW, key, values.cast(pa.string()), present)
        ints = pc.fill_null(values.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
        return _Member(INT, key, present, ints)
    if pa.types.is_decimal(kind):  # exact: the decimal's own digits, never a float
        return _text_member(RAW, key, decimal_json_text(values), present)
    if pa.types.is_floating(kind):  # NaN and infinities are left out
        present &= pc.fill_null(pc.is_finite(values), False).to_numpy(zero_copy_only=False)
        floats = pc.fill_null(values.cast(pa.float64()), 0.0).to_numpy(zero_copy_only=False)
        offsets, data = _float_texts(np.where(present, floats, 0.0))
        return _Member(RAW, key, present, offsets, data)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return _text_member(QUOTED if _plain_text(values) else ESCAPED, key, values, present)
    if _text_lists(kind) and values.values.null_count == 0:
        offsets, data = text_buffers(values.values)
        lists = values.offsets.to_numpy().astype(np.int64)
        arguments = (present, lists, offsets, data, not _plain_text(values.values))
        bounds = kernel("list_bounds")(*arguments)
        text = _empty(bounds[-1], np.uint8)
        kernel("write_lists")(text, bounds, *arguments)
        return _Member(RAW, key, present, bounds, text)
    if _written_by_polars(kind):  # other lists of scalars: polars' JSON writer
        inner = pl.struct(pl.col("v")).struct.json_encode()
        inner = inner.str.strip_prefix('{"v":').str.strip_suffix("}")
        text = pl.DataFrame({"v": _series(values)}).select(inner).to_series().to_arrow()
        return _text_member(RAW, key, text, present)
    # structs, maps, ...: orjson, keys sorted (maps as objects)
    python = values.to_pylist(maps_as_pydicts="lossy")
    return _text_member(RAW, key, python_json(python, ~present, nested=True), present)


def _float_texts(floats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and bytes of each float as orjson writes it: orjson writes the whole array
    (`[a,b,...]`, in C), and the commas are cut out."""
    text = np.frombuffer(orjson.dumps(floats, option=orjson.OPT_SERIALIZE_NUMPY), np.uint8)
    text = text[1:-1]
    comma = text == ord(",")
    commas = np.flatnonzero(comma)  # value i ends at the i-th comma; i commas precede it
    n = len(floats)
    offsets = np.empty(n + 1, dtype=np.int64)
    offsets[0] = 0
    offsets[1:n] = commas + 1 - np.arange(1, n)
    offsets[n] = len(text) - (n - 1)
    return offsets, text[~comma]


def _text_lists(kind: pa.DataType) -> bool:
    if not (pa.types.is_list(kind) or pa.types.is_large_list(kind)):
        return False
    return pa.types.is_string(kind.value_type) or pa.types.is_large_string(kind.value_type)


def _text_member(kind: int, key: bytes, text: pa.Array, present: np.ndarray) -> _Member:
    offsets, data = text_buffers(text)
    return _Member(kind, key, present, offsets, data)


def _members(fields: Sequence[Field], n: int) -> list[_Member]:
    """The fields some row has, keys sorted."""
    if not n:
        return []
    members = (_member(f) for f in sorted(fields, key=lambda f: f.key) if not f.missing.all())
    return [m for m in members if m is not None]


def _assemble(members: Sequence[_Member], n: int) -> tuple[np.ndarray, np.ndarray]:
    """Offsets and UTF-8 bytes of `n` objects (`{}` where a row has no member): the
    members' buffers packed row-major for `json_kernels.write_objects`."""
    numeric = [m for m in members if m.kind in (INT, BOOL)]
    texts = [m for m in members if m.kind not in (INT, BOOL)]
    slots = {id(m): slot for group in (numeric, texts) for slot, m in enumerate(group)}
    present = _empty((n, len(members)), np.bool_)
    for column, member in enumerate(members):
        present[:, column] = member.present
    numbers = _empty((n, len(numeric)), np.int64)
    for column, member in enumerate(numeric):
        numbers[:, column] = member.values
    offsets = _empty((n + 1, len(texts)), np.int64)
    pieces, base = [], 0
    for column, member in enumerate(texts):
        first, last = member.values[0], member.values[-1]
        offsets[:, column] = member.values + (base - first)
        pieces.append(member.data[first:last])
        base += last - first
    heads = b"".join(b"," + m.key + (b'"' if m.kind in (QUOTED, ESCAPED) else b"") for m in members)
    head_offsets = np.cumsum(
        [0, *(len(m.key) + 1 + (m.kind in (QUOTED, ESCAPED)) for m in members)]
    )
    arguments = (
        np.array([m.kind for m in members], dtype=np.int64),
        np.array([slots[id(m)] for m in members], dtype=np.int64),
        np.frombuffer(heads, dtype=np.uint8).copy(),
        head_offsets.astype(np.int64),
        present,
        numbers,
        offsets,
        np.concatenate(pieces, out=_empty(base, np.uint8)) if pieces else _empty(0, np.uint8),
    )
    bounds = kernel("object_bounds")(*arguments)
    out = _empty(bounds[-1], np.uint8)
    kernel("write_objects")(out, bounds, *arguments)
    return bounds, out


def json_texts(fields: Sequence[Field], n: int) -> pa.LargeStringArray:
    """`n` JSON objects as an Arrow text array, keys sorted, each key left out where it is
    missing; null where a row has no key at all."""
    members = _members(fields, n)
    if not members:
        return pa.nulls(n, pa.large_string())
    offsets, data = _assemble(members, n)
    present = np.logical_or.reduce([m.present for m in members])
    validity = pa.py_buffer(np.packbits(present, bitorder="little"))
    nulls = n - int(np.count_nonzero(present))
    return pa.LargeStringArray.from_buffers(
        n, pa.py_buffer(offsets), pa.py_buffer(data), validity, nulls
    )


def json_objects(fields: Sequence[Field], n: int) -> pl.Series:
    """`n` JSON objects as text, keys sorted, each key left out where it is missing; null
    where a row has no key at all."""
    return pl.Series("json", json_texts(fields, n), dtype=_TEXT)


def json_records(fields: Sequence[Field], n: int) -> list[bytes]:
    """`n` JSON objects as bytes (`{}` for a row with no key): the bytes form of
    `values.records`."""
    members = _members(fields, n)
    if not members:
        return [b"{}"] * n
    offsets, data = _assemble(members, n)
    buffers = [None, pa.py_buffer(offsets), pa.py_buffer(data)]
    return pa.LargeBinaryArray.from_buffers(pa.large_binary(), n, buffers).to_pylist()


def unix_seconds_json(array: pa.Array) -> pl.Series:
    """Timestamps as JSON Unix seconds: an integer when whole, else a float to the
    microsecond (as `values.unix_seconds`); null where missing."""
    ints, unit = epoch_units(array)
    micros = ints * (1_000_000 // unit) if unit <= 1_000_000 else np.floor_divide(ints, 1000)
    whole = np.floor_divide(micros, 1_000_000)
    # numpy's true division, correctly rounded as Python's (polars may multiply by 1e-6)
    fractional = micros / 1_000_000
    text = pl.select(
        pl.when(pl.Series(micros % 1_000_000 == 0))
        .then(pl.Series(whole).cast(_TEXT))
        .otherwise(pl.Series(fractional).cast(_TEXT))
    ).to_series()
    missing = missing_mask(array)
    if missing.any():
        text = pl.select(pl.when(pl.Series(~missing)).then(text)).to_series()
    return text
