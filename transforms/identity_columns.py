"""Who a row is: its user id, else its anonymous id, blank ids counting as none.

Segment writes `user_id = ''` (or whitespace) for a call made without a user id; such a
row belongs to its anonymous id exactly as if the user id were null (mapping.md, Identity).
The canonical id the flows attach to a frame goes in a reserved column, `CANONICAL`, which
no Segment column can be named (warehouse columns are snake_case letters, digits and `_`,
never starting with `__`), so a trait or property named `canonical_id` is kept as one.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.columns import CANONICAL
from connect_sync.transforms.values import as_series, as_text

__all__ = ["CANONICAL", "LEGACY_CANONICAL", "blank_text_as_null", "canonical_column", "who"]

#: The name flows used before `CANONICAL`; read only when a frame has no `CANONICAL`.
LEGACY_CANONICAL = "canonical_id"


def blank_text_as_null(text: pa.Array) -> pa.Array:
    """Text with empty and whitespace-only values as null (others as they are); the same
    array when none is blank (no copy of the strings, the usual case)."""
    blank = pc.or_(pc.equal(pc.binary_length(text), 0), pc.utf8_is_space(text))
    if not pc.any(blank).as_py():
        return text
    return pc.if_else(blank, pa.scalar(None, text.type), text)


def id_text(frame: pd.DataFrame, column: str) -> pa.Array:
    """An id column as Arrow text, blank ids as null (all null when there is no column)."""
    if column not in frame.columns:
        return pa.nulls(len(frame), pa.string())
    return blank_text_as_null(as_text(frame[column]))


def who(frame: pd.DataFrame) -> pd.Series:
    """Each row's id as a string: its user id, else its anonymous id (null when neither);
    an empty or whitespace-only id counts as none. Coalesced in Arrow (pandas' astype +
    fillna cost 0.3 s at 2.5M rows)."""
    user, anonymous = (id_text(frame, c) for c in ("user_id", "anonymous_id"))
    return as_series(pc.coalesce(user, anonymous), frame.index)


def canonical_column(frame: pd.DataFrame) -> str:
    """The column of `frame` holding the canonical id: `CANONICAL`, or, while flows still
    name it so, `LEGACY_CANONICAL` when the frame has no `CANONICAL` column."""
    if CANONICAL in frame.columns or LEGACY_CANONICAL not in frame.columns:
        return CANONICAL
    return LEGACY_CANONICAL
