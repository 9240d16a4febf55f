"""What the message streams (events, pages, screens) share: one track per message id never
delivered before, attributed to the canonical id, oldest call first."""

from __future__ import annotations

from abc import abstractmethod
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from connect_sync.connect.client import ItemChunk
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.transforms.events import TrackPayloads
from connect_sync.transforms.messages import unique_rows
from connect_sync.transforms.rows import newest, who
from connect_sync.transforms.traits import chronological
from connect_sync.warehouse.segment import Window


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
        read_max = newest(rows, "uuid_ts")
        rows = rows.assign(canonical_id=context.graph.resolve(who(rows)))
        # The rows to send, as positions in time order (the 2.5M-row frame is never copied
        # or sorted): the first row of each message, not delivered, in scope.
        at = chronological(rows)
        if context.scoped:  # a partition or an audience counts and looks up its own rows
            at = at[context.in_scope(rows["canonical_id"].take(at)).to_numpy(dtype=bool)]
        counts.read += len(at)
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
            anonymous = [] if context.options.dry_run else _anonymous_profiles(part, built)
            yield (
                ItemChunk(built.message_ids, built.payloads),
                Booked(rejected=built.rejected, anonymous_profiles=anonymous),
            )


def _anonymous_profiles(part: pd.DataFrame, built: TrackPayloads) -> list[str]:
    """The anonymous ids these payloads create Connect profiles under (no user id, no
    link yet), so a later run can fold them into their user."""
    if not built.message_ids:
        return []
    anonymous = part["user_id"].isna() & (
        part["canonical_id"].astype("string") == part["anonymous_id"].astype("string")
    ).fillna(False)
    sent = part["id"].astype(str).isin(built.message_ids)
    ids = part.loc[(anonymous & sent).to_numpy(dtype=bool), "anonymous_id"]
    return ids.astype(str).unique().tolist()
