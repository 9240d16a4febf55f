"""What the message streams (events, pages, screens) share: one track per message id never
delivered before, attributed to the canonical id, oldest call first."""

from __future__ import annotations

import logging
from abc import abstractmethod
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from connect_sync.connect.client import ItemChunk
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.transforms.events import TrackPayloads
from connect_sync.transforms.identity_columns import CANONICAL, who
from connect_sync.transforms.messages import unique_rows
from connect_sync.transforms.rows import newest, utc_times
from connect_sync.transforms.traits import chronological
from connect_sync.warehouse.segment import Window

log = logging.getLogger(__name__)


class MessageStream(Stream):
    """Rows of one table in the run's window become tracks, each message id once.

    Subclasses read the window's rows (`read`), may load what every chunk needs
    (`prepare`), and build one chunk's payloads (`build`)."""

    endpoint: ClassVar[str] = "track"

    @abstractmethod
    def read(self, context: RunContext, window: Window) -> pd.DataFrame:
        """The table's rows in the window, in storage order."""

    def prepare(self, context: RunContext, rows: pd.DataFrame, at: np.ndarray, window: Window):
        """What every chunk's build needs, for the rows at positions `at`."""
        return None

    @abstractmethod
    def build(self, part: pd.DataFrame, at: np.ndarray, prepared: Any) -> TrackPayloads:
        """The payloads of `part`, the rows at positions `at` (one chunk, in send order)."""

    def run(self, context: RunContext) -> StreamResult:
        counts = context.report.stream(self.name)
        window = context.window(self.cursor_table)
        rows = self.read(context, window)
        future = loaded_after(rows, context.books.horizon)
        read_max = newest(rows, "uuid_ts", ~future if future.any() else None)
        rows = rows.assign(**{CANONICAL: context.graph.resolve(who(rows))})
        # The rows to send, as positions in time order (the 2.5M-row frame is never copied
        # or sorted): the first row of each message, not delivered, in scope.
        at = chronological(rows)
        if context.scoped:  # a partition or an audience counts and looks up its own rows
            at = at[context.in_scope(rows[CANONICAL].take(at)).to_numpy(dtype=bool)]
        if future.any():  # left for a later run: the cursor stays before them
            later = future[at]
            context.report.quality["loaded_in_future"] += int(later.sum())
            at = at[~later]
        counts.read += len(at)
        if context.first_read(self.cursor_table) and context.options.partition in (None, 0):
            _count_without_uuid_ts(context, self.table)
        ids = rows["id"].take(at)
        if (first := unique_rows(ids)) is not None:
            at, ids = at[first], ids[first]
        counts.deduplicated += counts.read - len(at)
        ids = ids.astype(str)
        done = context.state.delivered_among(self.book, ids)
        if done:
            at = at[~ids.isin(done).to_numpy(dtype=bool)]
        counts.unchanged += len(done)
        prepared = self.prepare(context, rows, at, window)
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, self._chunks(context, rows, at, prepared)),
            context.books.delivered(self.book),
            total=len(at),
            by_message_id=True,
        )
        counts.sent += stats.sent
        return StreamResult(read_max, stats)

    def _chunks(self, context: RunContext, rows: pd.DataFrame, at: np.ndarray, prepared: Any):
        """The payloads of the rows at positions `at`, in that order, `chunk_size` at a
        time, so only one chunk's rows and payloads exist at once; each with the rows it
        rejected and the anonymous profiles it creates."""
        chunk = context.settings.chunk_size

        def build(start: int) -> tuple[pd.DataFrame, TrackPayloads]:
            positions = at[start : start + chunk]
            part = rows.take(positions)
            return part, self.build(part, positions, prepared)

        starts = range(0, len(at), chunk)
        for part, built in built_ahead(build, starts, context.settings.build_threads):
            context.report.quality.update(built.quality)
            context.report.quality.update(built.left_out)  # values left out, items sent
            anonymous = [] if context.options.dry_run else _anonymous_profiles(part, built)
            yield (
                ItemChunk(built.message_ids, built.payloads),
                Booked(rejected=built.rejected, anonymous_profiles=anonymous),
            )


def _count_without_uuid_ts(context: RunContext, table: str) -> None:
    """Count, on a stream's first full read, the rows no window can read (`uuid_ts` NULL):
    they are never sent; the report's quality `no_uuid_ts` says how many there are."""
    clause = context.source.clause("count_without_uuid_ts", {}, table=table)
    with context.source.engine.connect() as conn:
        missing = int(conn.execute(clause).scalar() or 0)
    if missing:
        context.report.quality["no_uuid_ts"] += missing
        log.warning(
            "%s: %s rows have no uuid_ts (never loaded by Segment): not sent", table, missing
        )


def loaded_after(rows: pd.DataFrame, horizon: datetime | None) -> np.ndarray:
    """Which rows were loaded (`uuid_ts`) after `horizon`: a loader clock in the future."""
    if horizon is None or rows.empty or "uuid_ts" not in rows.columns:
        return np.zeros(len(rows), dtype=bool)
    return (utc_times(rows["uuid_ts"]) > pd.Timestamp(horizon)).fillna(False).to_numpy(dtype=bool)


def _anonymous_profiles(part: pd.DataFrame, built: TrackPayloads) -> list[str]:
    """The anonymous ids these payloads create Connect profiles under (no user id, no
    link yet), so a later run can fold them into their user."""
    if not built.message_ids:
        return []
    anonymous = part["user_id"].isna() & (
        part[CANONICAL].astype("string") == part["anonymous_id"].astype("string")
    ).fillna(False)
    sent = part["id"].astype(str).isin(built.message_ids)
    ids = part.loc[(anonymous & sent).to_numpy(dtype=bool), "anonymous_id"]
    return ids.astype(str).unique().tolist()
