"""What every stream of a run shares: the run's settings and options, the warehouse, the
state store (read; `Books` writes), the outbox, the identity graph and the report."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import pandas as pd
from connect_sync.connect.client import DeliveryStats, ItemChunk
from connect_sync.connect.outbox import Outbox
from connect_sync.flows.books import Ack, Books
from connect_sync.flows.options import SyncOptions
from connect_sync.flows.report import RunReport
from connect_sync.transforms.identity import IdentityGraph
from connect_sync.transforms.partition import in_partition
from connect_sync.transforms.rows import utc_times
from connect_sync.warehouse.segment import EPOCH, SegmentSource, Window
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings

#: Called as progress(stream, done, total, stats[, bad_rows=n]): items finished of the
#: stream's total, the live DeliveryStats (sent, retries, rejections) of its delivery,
#: and the rows of the stream rejected before sending (done counts them).
ProgressCallback = Callable[..., None]


@dataclass
class RunContext:
    """One run's shared parts, handed to each stream's `run`."""

    settings: Settings
    options: SyncOptions
    report: RunReport
    source: SegmentSource
    state: StateStore
    books: Books
    outbox: Outbox
    graph: IdentityGraph
    #: Every identity link (from_id, to_id, kind, ts, loaded); dropped once no stream
    #: needs it (100+ MB at 1M users).
    links: pd.DataFrame | None
    cursors: dict[str, datetime]
    audience: set[str] | None = None
    progress: ProgressCallback | None = None
    #: The alias rows the aliases stage read (their ids are users to re-evaluate).
    alias_rows: pd.DataFrame | None = None
    #: Streams still to run that read `links` (the last one lets it go).
    link_readers: set[str] = field(default_factory=set)

    def window(self, cursor_table: str) -> Window:
        """The rows this run reads from a table: a backfill's window, or since its cursor
        minus the lookback."""
        if self.options.backfill is not None:
            return self.options.backfill
        cursor = self.cursors.get(cursor_table)
        if cursor is None:
            return Window("uuid_ts", EPOCH)
        return Window("uuid_ts", cursor - timedelta(hours=self.settings.lookback_hours))

    def first_read(self, cursor_table: str) -> bool:
        """Whether the run reads the whole table (no cursor yet, or a full refresh)."""
        return self.options.backfill is None and self.window(cursor_table).since == EPOCH

    @property
    def scoped(self) -> bool:
        """Whether this job handles a subset of the users (an audience, a partition)."""
        return self.audience is not None or self.options.partition is not None

    def in_scope(self, canonical_ids: pd.Series) -> pd.Series:
        """Which rows this job handles: those of the run's audience (all without one) whose
        canonical id hashes to this job's partition (all in an unpartitioned job)."""
        keep = pd.Series(True, index=canonical_ids.index)
        if self.audience is not None:
            keep = canonical_ids.astype(str).isin(self.audience).fillna(False).astype(bool)
        if self.options.partition is not None:
            keep &= in_partition(canonical_ids, self.options.partition, self.options.partitions)
        return keep

    def links_in(self, window: Window) -> pd.Series:
        """Both ids of every link seen in the window: a link can move an id's rows to
        another user even when no row of that user is new."""
        assert self.links is not None
        links = self.links
        column = "loaded" if window.column == "uuid_ts" else "ts"
        when = utc_times(links[column])
        inside = ((when >= window.since) & (when < window.until)).fillna(False)
        recent = links[inside.to_numpy(dtype=bool)]
        return pd.concat([recent["from_id"], recent["to_id"]]).astype(str)

    def done_with_links(self, stream: str) -> None:
        """`stream` reads the links no more: the last reader lets them go."""
        self.link_readers.discard(stream)
        if not self.link_readers:
            self.links = None

    def send(
        self,
        stream: str,
        endpoint: str,
        chunks: Iterable[ItemChunk],
        on_ack: Ack,
        total: int | None = None,
        *,
        by_message_id: bool,
    ) -> DeliveryStats:
        """Deliver items (streamed chunk by chunk, never batched up front); the books
        record what Connect refused or never answered."""
        if total is None:
            chunks = list(chunks)
            total = sum(map(len, chunks))
        progress = self.progress
        counts = self.report.stream(stream)
        rejected_before = counts.rejected

        def on_progress(stats: DeliveryStats) -> None:
            if progress:  # rows rejected while building count as done, like the report's
                bad_rows = counts.rejected - rejected_before
                progress(stream, stats.processed + bad_rows, total, stats, bad_rows=bad_rows)

        if progress:
            progress(stream, 0, total, DeliveryStats())
        stats = self.outbox.send_chunks(endpoint, chunks, on_ack, on_progress)
        on_progress(stats)  # the last word: every chunk built, its bad rows counted
        self.books.refused(stream, f"/v2/{endpoint}", stats, by_message_id=by_message_id)
        return stats
