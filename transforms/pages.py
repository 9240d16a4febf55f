"""Track payloads from `pages` and `screens` rows (mapping.md, Pages, screens and groups).

A page (screen) call becomes a track named `[Segment Page] <name>` (`[Segment Screen]
<name>`), or the bare prefix when `name` is null or blank; its properties are the row's own
columns, `name` included. The names are built on whole Arrow columns and the payloads
written by `events.track_payloads`, as for tracks.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.columns import custom_columns
from connect_sync.transforms.events import TrackPayloads, property_texts, track_payloads
from connect_sync.transforms.identity_columns import CANONICAL, LEGACY_CANONICAL, canonical_column
from connect_sync.transforms.values import as_text

#: The event name prefix of each call table.
EVENT_PREFIXES = {"pages": "[Segment Page]", "screens": "[Segment Screen]"}

#: Columns the caller adds to the rows that are not properties of the call.
NOT_PROPERTIES = frozenset({CANONICAL, LEGACY_CANONICAL})


def _text(column: pd.Series | None, n: int) -> pa.Array:
    return pa.nulls(n, pa.string()) if column is None else as_text(column)


def page_events(names: pa.Array, prefix: str) -> pa.Array:
    """`<prefix> <name>` per row, the bare prefix where the name is null or blank (empty or
    whitespace only); a name otherwise as sent."""
    blank = pc.fill_null(pc.equal(pc.utf8_length(pc.utf8_trim_whitespace(names)), 0), True)
    named = pc.binary_join_element_wise(prefix, names, " ")
    return pc.if_else(blank, pa.scalar(prefix, pa.string()), named)


def page_properties(rows: pd.DataFrame) -> pa.Array:
    """Each row's properties object as JSON text (typed, keys sorted, nulls left out; null
    when none): its non-Segment, non-context columns, `name` included."""
    columns = [c for c in custom_columns(rows.columns) if c not in NOT_PROPERTIES]
    own = pd.DataFrame({c: rows[c] for c in columns}, index=rows.index, copy=False)
    return property_texts(own)


def page_payloads(rows: pd.DataFrame, table: str) -> TrackPayloads:
    """One track payload per row of a `pages` or `screens` table (`table` picks the
    prefix; KeyError for another table).

    `rows` are deduplicated by `id` and in send order already, and carry the canonical id
    (`CANONICAL`: the user to send, as for `track_payloads`). A row without one is rejected
    (`missing_user_id`), and so is one whose event name is over 200 characters
    (`event_name_too_long`); the others keep their order.
    """
    prefix = EVENT_PREFIXES[table]
    names = _text(rows.get("name"), len(rows))
    calls = pd.DataFrame(
        {
            "id": rows["id"],
            CANONICAL: rows[canonical_column(rows)],
            "event_text": pd.arrays.ArrowExtensionArray(page_events(names, prefix)),
        },
        index=rows.index,
        copy=False,
    )
    if "timestamp" in rows.columns:
        calls["timestamp"] = rows["timestamp"]
    return track_payloads(calls, page_properties(rows))
