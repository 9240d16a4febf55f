"""Track payloads from `tracks` rows and the events' own property tables (mapping.md, Events).

Column-wise like the users transform: names, reasons and timestamps on whole columns,
then all payloads at once as JSON bytes (`transforms.json_objects`), no dict per row.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.columns import custom_columns
from connect_sync.transforms.identity_columns import canonical_column
from connect_sync.transforms.json_objects import json_objects, json_records, unix_seconds_json
from connect_sync.transforms.messages import drop_repeated
from connect_sync.transforms.values import (
    INVALID_TIMESTAMP,
    Field,
    as_arrow,
    as_series,
    beyond_iso,
    json_column,
    missing_mask,
    null_where,
)

MAX_EVENT_NAME = 200
REJECTED_COLUMNS = ["message_id", "user_id", "reason"]


@dataclass
class TrackPayloads:
    """Payloads in send order with their message ids; rejected rows with their reasons
    (`quality`, by reason); values left out of payloads that were sent (`left_out`, by
    reason: data-quality counts, not rejections)."""

    message_ids: list[str]
    payloads: list[bytes]  # one JSON object per track, keys sorted
    rejected: pd.DataFrame
    quality: Counter[str] = field(default_factory=Counter)
    left_out: Counter[str] = field(default_factory=Counter)


def property_fields(event_table: pd.DataFrame, quality: Counter[str] | None = None) -> list[Field]:
    """The event's own columns (not Segment's, not context) as typed fields. A value that
    cannot be sent (an infinite timestamp, ...) is left out and counted in `quality` by
    reason; so is a column whose type has no JSON form (`values.json_column`)."""
    fields = []
    for key in custom_columns(event_table.columns):
        array = as_arrow(event_table[key])
        if array is None:
            array = pa.array(event_table[key].astype("string"))
        ready, dropped = json_column(key, array)
        if quality is not None:
            quality.update(dropped)
        if ready is not None:
            fields.append(Field(key, ready))
    return fields


def property_texts(event_table: pd.DataFrame, quality: Counter[str] | None = None) -> pa.Array:
    """The properties object of each row of an event table, as JSON text (typed, keys
    sorted, no nulls; null when the row has no property), in the table's row order.
    `quality`: where the values left out are counted (`property_fields`)."""
    fields = property_fields(event_table, quality)
    objects = json_objects(fields, len(event_table)).to_arrow()
    return objects.cast(pa.string()) if objects.type != pa.string() else objects


def property_objects(event_table: pd.DataFrame) -> pd.Series:
    """One properties object per message id of an event table, as JSON text (typed, keys
    sorted, no nulls; null when it has no property; the last row of a duplicated id wins).
    Index: the message id; Arrow string dtype."""
    event_table = drop_repeated(event_table, keep="last")
    index = pd.Index(event_table["id"].astype(str).to_numpy(), dtype=object)
    return as_series(property_texts(event_table), index)


def dedupe_messages(rows: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """First row per message id, and how many duplicates were dropped (the same frame
    when no id repeats)."""
    deduped = drop_repeated(rows, keep="first")
    return deduped, len(rows) - len(deduped)


def _text(frame: pd.DataFrame, name: str) -> pa.Array:
    """A text column; blank (empty or whitespace-only) values as null, others as sent."""
    if name not in frame.columns:
        return pa.nulls(len(frame), pa.string())
    array = as_arrow(frame[name].astype("string")).cast(pa.string())
    blank = pc.equal(pc.binary_length(pc.utf8_trim_whitespace(array)), 0)
    return pc.if_else(blank, pa.scalar(None, pa.string()), array)


def event_names(tracks: pd.DataFrame) -> pa.Array:
    """`event_text` (the name as sent), else `event`; null when neither has one."""
    return pc.coalesce(_text(tracks, "event_text"), _text(tracks, "event"))


def track_payloads(
    tracks: pd.DataFrame, properties: pd.Series | pa.Array | None = None
) -> TrackPayloads:
    """One track payload per row of `tracks` (already deduplicated and ordered).

    `properties`: JSON text by message id (`property_objects`), or one text per row of
    `tracks`, null where it has none (`property_texts` of the matching rows).

    `tracks` carries the canonical id (`identity_columns.CANONICAL`): the user id, else
    the canonical id of the anonymous id (`identity_columns.who`, then the graph). A row
    without one, or whose event name is over 200 characters (or missing), is rejected
    with its reason instead.
    """
    n = len(tracks)
    user_id = _text(tracks, canonical_column(tracks))
    name = event_names(tracks)
    too_long = pc.fill_null(pc.greater(pc.utf8_length(name), MAX_EVENT_NAME), False)
    reasons = np.full(n, None, dtype=object)
    reasons[missing_mask(name)] = "missing_event_name"
    reasons[too_long.to_numpy(zero_copy_only=False)] = "event_name_too_long"
    reasons[missing_mask(user_id)] = "missing_user_id"
    bad = pd.notna(reasons)
    message_ids = tracks["id"].astype(str).to_numpy(dtype=object)
    bad_rows = np.flatnonzero(bad)
    rejected = pd.DataFrame(
        {
            "message_id": message_ids[bad_rows],
            "user_id": user_id.take(pa.array(bad_rows)).to_pylist(),
            "reason": reasons[bad_rows],
        },
        columns=REJECTED_COLUMNS,
    )
    quality = Counter(rejected["reason"].tolist())
    left_out: Counter[str] = Counter()

    good = np.flatnonzero(~bad)
    take = pa.array(good)
    kept_ids = message_ids[good].tolist()
    fields = [Field("user_id", user_id.take(take)), Field("event", name.take(take))]
    if isinstance(properties, pa.Array):  # one per row: no lookup by message id
        fields.append(Field("properties", _null_empty(properties.take(take)), encoded=True))
    elif properties is not None and len(properties):
        fields.append(Field("properties", _property_texts(properties, kept_ids), encoded=True))
    if "timestamp" in tracks.columns:
        stamps = as_arrow(tracks["timestamp"])
        if stamps is None or not pa.types.is_timestamp(stamps.type):
            stamps = pa.array(pd.to_datetime(tracks["timestamp"], utc=True, errors="coerce"))
        stamps = stamps.take(take)
        beyond = beyond_iso(stamps)  # `infinity`: the event is sent without a time
        if beyond.any():
            left_out[INVALID_TIMESTAMP] += int(np.count_nonzero(beyond))
            stamps = null_where(stamps, beyond)
        fields.append(Field("timestamp", unix_seconds_json(stamps), encoded=True))
    payloads = json_records(fields, len(good))
    return TrackPayloads(kept_ids, payloads, rejected, quality, left_out)


def _property_texts(properties: pd.Series, message_ids: list[str]) -> pa.Array:
    """The properties object (JSON text) of each message, null where it has none (looked
    up by message id in Arrow: a pandas reindex costs ~1 us an id)."""
    texts = as_arrow(properties)
    if texts is None or not (
        pa.types.is_string(texts.type) or pa.types.is_large_string(texts.type)
    ):
        raise TypeError("properties must be JSON text per message id (see property_objects)")
    keys = pa.array(properties.index.astype(str), pa.string())
    at = pc.index_in(pa.array(message_ids, pa.string()), value_set=keys)
    return _null_empty(texts.take(at))


def _null_empty(texts: pa.Array) -> pa.Array:
    """Null for an empty object: a message without properties sends no `properties`."""
    empty = pc.fill_null(pc.equal(texts, "{}"), False)
    return pc.if_else(empty, pa.scalar(None, texts.type), texts)
