"""Events: track calls, with the properties from each event's own table."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.messages import MessageStream
from connect_sync.transforms.columns import custom_columns
from connect_sync.transforms.events import TrackPayloads, track_payloads
from connect_sync.transforms.messages import latest_loaded
from connect_sync.transforms.rows import chunk_properties, property_rows
from connect_sync.warehouse.segment import Window

#: The load time of a row: of two copies of a message's properties, the later one wins.
LOADED = "uuid_ts"


class EventsStream(MessageStream):
    """One track per `tracks` message id never delivered before (mapping.md, Events)."""

    name = "events"
    table = "tracks"
    book = "event"

    def read(
        self, context: RunContext, window: Window, bounds: dict[str, Any] | None
    ) -> pd.DataFrame:
        if bounds is None:
            return context.source.tracks(window, ordered=False)
        return context.source.tracks_in_slice(window, bounds)

    def prepare(
        self,
        context: RunContext,
        rows: pd.DataFrame,
        at: np.ndarray,
        window: Window,
        bounds: dict[str, Any] | None,
    ):
        """The own table of each event to send (`id` and property columns, one row per
        message id), as Arrow tables, with each row's place in them: each chunk takes its
        rows (Arrow's take costs half of pandas' `iloc`) and writes their JSON."""
        tables = {}
        source = context.source
        for table in sorted(str(name) for name in rows["event"].take(at).dropna().unique()):
            columns = custom_columns(source.columns(table)) if source.has(table) else []
            frame = source.event_properties(table, window, [*columns, LOADED], bounds)
            if frame is not None and len(frame):
                frame = latest_loaded(frame, LOADED).drop(columns=LOADED, errors="ignore")
                tables[table] = pa.Table.from_pandas(frame, preserve_index=False)
        table_of, row_of = property_rows(rows, tables)
        return tables, list(tables), table_of, row_of

    def build(self, part: pd.DataFrame, at: np.ndarray, prepared: Any) -> TrackPayloads:
        tables, names, table_of, row_of = prepared
        left_out: Counter[str] = Counter()
        properties = chunk_properties(tables, names, table_of[at], row_of[at], left_out)
        built = track_payloads(part, properties)
        built.left_out.update(left_out)
        return built
