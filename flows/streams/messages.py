"""What the message streams (events, pages, screens) share: one track per message id never
delivered before, attributed to the canonical id, oldest call first."""

from __future__ import annotations

import logging
from abc import abstractmethod
from collections.abc import Iterator
from datetime import datetime
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from connect_sync.connect.client import ItemChunk
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.transforms.buckets import bucket_rows
from connect_sync.transforms.events import TrackPayloads
from connect_sync.transforms.identity_columns import CANONICAL, who
from connect_sync.transforms.messages import unique_rows
from connect_sync.transforms.rows import newest, utc_times
from connect_sync.transforms.slices import WHOLE_WINDOW, SeenMessages, TimeSlice, time_slices
from connect_sync.transforms.traits import chronological
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.engine import release_unused_memory
from connect_sync.warehouse.segment import Window

log = logging.getLogger(__name__)

#: The columns that decide whether a row is sent (who, when, loaded when): what is read
#: of a message again to confirm an earlier slice sent it.
_KEY_COLUMNS = frozenset({"id", "anonymous_id", "user_id", "timestamp", "received_at", "uuid_ts"})


class MessageStream(Stream):
    """Rows of one table in the run's window become tracks, each message id once.

    Subclasses read the window's rows (`read`), may load what every chunk needs
    (`prepare`), and build one chunk's payloads (`build`)."""

    endpoint: ClassVar[str] = "track"

    @abstractmethod
    def read(
        self, context: RunContext, window: Window, bounds: dict[str, Any] | None
    ) -> pd.DataFrame:
        """The table's rows in the window (in one time slice: `bounds`), in storage order."""

    def prepare(
        self,
        context: RunContext,
        rows: pd.DataFrame,
        at: np.ndarray,
        window: Window,
        bounds: dict[str, Any] | None,
    ):
        """What every chunk's build needs, for the rows at positions `at`."""
        return None

    @abstractmethod
    def build(self, part: pd.DataFrame, at: np.ndarray, prepared: Any) -> TrackPayloads:
        """The payloads of `part`, the rows at positions `at` (one chunk, in send order)."""

    def run(self, context: RunContext) -> StreamResult:
        window = context.window(self.cursor_table)
        if context.first_read(self.cursor_table) and context.options.partition in (None, 0):
            _count_without_uuid_ts(context, self.table)
        slices = self._slices(context, window)
        newest_read: list[datetime] = []
        seen = SeenMessages()
        first = self._slice(
            context, window, slices[0], seen if len(slices) > 1 else None, newest_read
        )
        if len(slices) == 1:
            chunks, total = self._chunks(context, *first), len(first[1])
        else:
            log.info("%s: %s rows read in %s time slices", self.name,
                     sum(s.rows for s in slices), len(slices))  # fmt: skip
            chunks = self._sliced_chunks(context, window, slices, first, seen, newest_read)
            total = sum(s.rows for s in slices)  # rows of the window: the most it sends
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, chunks),
            context.books.delivered(self.book),
            total=total,
            by_message_id=True,
        )
        context.report.stream(self.name).sent += stats.sent
        return StreamResult(max(newest_read, default=None), stats)

    def _slices(self, context: RunContext, window: Window) -> list[TimeSlice]:
        """The window's time slices (transforms.slices): one, the whole window, where the
        warehouse bills by bytes scanned or the table has no event time."""
        source = context.source
        columns = source.columns(self.table)
        if capabilities(source.engine.dialect.name).single_scan or "timestamp" not in columns:
            return [WHOLE_WINDOW]
        per_slice = bucket_rows(context.settings.bucket_rows, len(columns))
        return time_slices(source.hours(self.table, window), per_slice)

    def _sliced_chunks(
        self,
        context: RunContext,
        window: Window,
        slices: list[TimeSlice],
        first: tuple[pd.DataFrame, np.ndarray, Any],
        seen: SeenMessages,
        newest_read: list[datetime],
    ) -> Iterator[tuple[ItemChunk, Booked]]:
        """The chunks of every slice in turn, each slice read once the one before is built."""
        yield from self._chunks(context, *first)
        del first
        for part in slices[1:]:
            release_unused_memory()
            yield from self._chunks(context, *self._slice(context, window, part, seen, newest_read))

    def _slice(
        self,
        context: RunContext,
        window: Window,
        part: TimeSlice,
        seen: SeenMessages | None,
        newest_read: list[datetime],
    ) -> tuple[pd.DataFrame, np.ndarray, Any]:
        """One slice's rows, the positions to send in time order (the first row of each
        message, not delivered, in scope, not taken by an earlier slice: `seen`, None for a
        window read whole) and what its chunks need; its newest load time goes to
        `newest_read`."""
        counts = context.report.stream(self.name)
        bounds = None if part is WHOLE_WINDOW else part.params
        rows = self.read(context, window, bounds)
        rows, at, future = self._in_order(context, rows)
        if (read_max := newest(rows, "uuid_ts", ~future if future.any() else None)) is not None:
            newest_read.append(read_max)
        if future.any():  # left for a later run: the cursor stays before them
            later = future[at]
            context.report.quality["loaded_in_future"] += int(later.sum())
            at = at[~later]
        counts.read += (read := len(at))
        ids = rows["id"].take(at)
        if (first := unique_rows(ids)) is not None:
            at, ids = at[first], ids[first]
        if seen is not None:
            if part.lo is not None:  # a message an earlier slice took
                again = self._sent_before(context, window, part.lo, ids, seen)
                keep = ~ids.astype(str).isin(again).to_numpy(dtype=bool)
                at, ids = at[keep], ids[keep]
            seen.add(ids)
        counts.deduplicated += read - len(at)
        ids = ids.astype(str)
        done = context.state.delivered_among(self.book, ids)
        if done:
            at = at[~ids.isin(done).to_numpy(dtype=bool)]
        counts.unchanged += len(done)
        return rows, at, self.prepare(context, rows, at, window, bounds)

    def _in_order(
        self, context: RunContext, rows: pd.DataFrame
    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
        """The rows with their canonical ids, the positions of those in scope in time
        order (the frame is never copied or sorted), and which were loaded after the
        run's horizon (a loader clock in the future)."""
        future = loaded_after(rows, context.books.horizon)
        rows = rows.assign(**{CANONICAL: context.graph.resolve(who(rows))})
        at = chronological(rows)
        if context.scoped:  # a partition or an audience counts and looks up its own rows
            at = at[context.in_scope(rows[CANONICAL].take(at)).to_numpy(dtype=bool)]
        return rows, at, future

    def _sent_before(
        self, context: RunContext, window: Window, lo: datetime, ids: pd.Series,
        seen: SeenMessages,
    ) -> set[str]:  # fmt: skip
        """Which of these message ids an earlier slice took to send: those whose hash it
        saw, confirmed by reading their rows before `lo` and selecting as it did."""
        hits = ids[seen.hits(ids)].astype(str).tolist()
        if not hits:
            return set()
        source = context.source
        columns = [c for c in source.columns(self.table) if c in _KEY_COLUMNS]
        earlier = source.calls_before(self.table, window, hits, lo, columns)
        earlier, at, future = self._in_order(context, earlier)
        at = at[~future[at]]
        return set(earlier["id"].take(at).astype(str))

    def _chunks(
        self, context: RunContext, rows: pd.DataFrame, at: np.ndarray, prepared: Any
    ) -> Iterator[tuple[ItemChunk, Booked]]:
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
