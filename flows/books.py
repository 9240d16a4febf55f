"""The run's books: the one writer of delivery state.

Everything a run writes about delivery goes through `Books`, in this order per stream:

1. before a chunk is handed to the outbox: the rows its build rejected (`rejected_rows`)
   and the anonymous profiles its events will create (`anonymous_profiles`);
2. as Connect acknowledges items: their message ids (`delivered`) or payload fingerprints
   (`fingerprints`) go to the local journal, never straight to the state store;
3. when the stream's delivery is over: the journal is merged (`checkpoint`), what Connect
   refused or never answered is recorded (`refused`), and the cursor moves (`settle`) only
   when nothing of the stream is left undelivered.

Like the Singer SDK's drain-then-commit, a cursor is written after the acknowledgements
it covers. A dry run books nothing. A partition books its acknowledgements and rejections
but moves no cursor: the coordinating job's `settle_partitions` does, once every
partition is back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from connect_sync.connect.client import DeliveryStats
from connect_sync.flows.report import RunReport
from connect_sync.warehouse.journal import AckJournal
from connect_sync.warehouse.state import StateStore

from connect_sync.secrets import mask_secrets, mask_text

log = logging.getLogger(__name__)

Ack = Callable[[list[str]], None]

#: How far past the run's start a row's `uuid_ts` may lie and still be sent and settled
#: (clocks of the loader and of this host disagree a little): a row loaded later than the
#: run's start plus this is left for a later run and no cursor moves past it.
CLOCK_SKEW = timedelta(minutes=5)


@dataclass
class Booked:
    """A chunk's side records, booked before its items are sent."""

    rejected: pd.DataFrame | None = None
    anonymous_profiles: list[str] = field(default_factory=list)


@dataclass
class PartitionResult:
    """What one partition did: its report, and per stream the newest row it settled
    (absent when the stream failed in it)."""

    partition: int
    report: dict[str, Any]
    settled: dict[str, datetime | None]
    #: Seconds of wall time and of CPU time (this process) the partition took.
    wall_s: float = 0.0
    cpu_s: float = 0.0


class Books:
    """The only writer of delivery state for one run (see the module docstring)."""

    def __init__(
        self,
        state: StateStore,
        report: RunReport,
        *,
        dry_run: bool,
        moves_cursors: bool,
    ) -> None:
        self.state = state
        self.report = report
        self.dry_run = dry_run
        #: False for backfills, audiences and partitions: their rows are a subset.
        self.moves_cursors = moves_cursors
        self.journal: AckJournal | None = None
        #: Per stream, the newest row settled without a failure (a partition's result).
        self.settled: dict[str, datetime | None] = {}
        #: The run's start plus CLOCK_SKEW: no cursor moves past it (None: no bound).
        self.horizon: datetime | None = None

    # -- the run --------------------------------------------------------------------------

    def open_journal(self, directory: Path, *, merge_partitions: bool) -> None:
        """The local acknowledgement journal; what a killed run acknowledged is merged
        into the state store now, before any bookkeeping is read."""
        self.journal = AckJournal(directory, self.state)
        self.report.acks_recovered = self.journal.replay()
        if merge_partitions:  # partitions of killed runs: merged now
            for folder in sorted(directory.glob("partition-*")):
                self.report.acks_recovered += AckJournal(folder, self.state).replay()

    def start_run(self, kind: str) -> str:
        return "dry-run" if self.dry_run else self.state.start_run(kind)

    def finish_run(self) -> None:
        """Merge the journal and write the run's row; a journal that cannot be merged stays
        on disk for the next run and fails this one."""
        report = self.report
        if self.journal is not None:
            try:
                self.journal.close()
            except Exception as exc:  # the segment stays on disk: the next run merges it
                log.error("could not merge acknowledgements into the state store: %s", exc)
                if report.error is None:
                    report.status, report.error = "failed", mask_text(str(exc))
        if not self.dry_run and report.run_id:
            self.state.finish_run(report.run_id, report.status, mask_secrets(report.as_dict()))

    def write_run(self, run_id: str, status: str, report: dict[str, Any]) -> None:
        """The run's row, for a run with a report of its own (`rejects replay`)."""
        self.state.finish_run(run_id, status, mask_secrets(report))

    def close_journal(self) -> None:
        if self.journal is not None:
            self.journal.close()

    def checkpoint(self) -> None:
        """Merge what the journal holds into the state store."""
        if self.journal is not None:
            self.journal.checkpoint()

    # -- before sending -------------------------------------------------------------------

    def booked(self, stream: str, built: Iterable[tuple[Any, Booked]]) -> Iterator[Any]:
        """The chunks of `built`, each handed on after its side records are booked."""
        for chunk, side in built:
            if side.rejected is not None and len(side.rejected):
                self.rejected_rows(stream, side.rejected)
            if side.anonymous_profiles:
                self.anonymous_profiles(side.anonymous_profiles)
            yield chunk

    def rejected_rows(self, stream: str, rejected: pd.DataFrame) -> None:
        """Rows a transform could not turn into a call (message_id, user_id, reason)."""
        counts = self.report.stream(stream)
        counts.rejected += len(rejected)
        self.report.rejected_by_reason.update(rejected["reason"].tolist())
        if not self.dry_run:
            self._record_new_rejections(stream, rejected)

    def _record_new_rejections(self, stream: str, rows: pd.DataFrame) -> None:
        """Record rejections, except those already recorded and not replayed for the same
        stream, key (message id, else user id) and reason: a row rejected again by every run
        of the lookback window is one rejection."""
        reasons = rows["reason"].astype(str)
        rows = rows.assign(reason=reasons.map({r: mask_text(r) for r in reasons.unique()}))
        keys = _rejection_keys(rows)
        known = self.state.pending_rejections(stream, keys.dropna().tolist())
        if known:
            pairs = pd.MultiIndex.from_arrays([keys.astype(object), rows["reason"].astype(object)])
            rows = rows[~pairs.isin(list(known))]
        if len(rows):
            self.state.record_rejections(self.report.run_id, stream, rows)

    def anonymous_profiles(self, anonymous_ids: list[str]) -> None:
        """Anonymous ids the next items create Connect profiles under, so a later run can
        fold them into their user once linked."""
        if not self.dry_run:
            self.state.record_anonymous_profiles(anonymous_ids, self.report.run_id)

    # -- acknowledgements -----------------------------------------------------------------

    def delivered(self, book: str) -> Ack:
        """Journal acknowledged message ids of `book` the moment Connect acks them."""

        def ack(keys: list[str]) -> None:
            if self.journal is not None:
                self.journal.delivered(book, keys, self.report.run_id)

        return ack

    def fingerprints(self, pending: dict[str, str]) -> Ack:
        """Journal the fingerprints (`pending`: key -> fingerprint of what is in flight) of
        acknowledged payloads."""

        def ack(keys: list[str]) -> None:
            if self.journal is not None:
                done = [(k, pending.pop(k)) for k in keys if k in pending]
                self.journal.fingerprints(done, self.report.run_id)

        return ack

    def forgotten(self) -> Ack:
        """Profiles folded into another user: they have no fingerprint any more."""

        def ack(keys: list[str]) -> None:
            if not self.dry_run:
                self.state.forget_users(keys)

        return ack

    # -- after sending --------------------------------------------------------------------

    def refused(
        self, stream: str, endpoint: str, stats: DeliveryStats, *, by_message_id: bool
    ) -> None:
        """Merge the journal; record what Connect refused (400) or never answered."""
        self.checkpoint()
        report = self.report
        report.requests += stats.requests
        report.retries += stats.retries
        report.rate_limited += stats.rate_limited
        report.undelivered += stats.undelivered
        report.stream(stream).rejected += len(stats.rejected)
        for r in stats.rejected:
            report.rejected_by_reason[r.reason] += 1
        refused = [*stats.rejected, *stats.failed]
        if refused and not self.dry_run:
            rows = pd.DataFrame(
                [
                    {
                        "message_id": r.key if by_message_id else None,
                        "user_id": r.user_id,
                        "reason": r.reason,
                        "retryable": r.retryable,
                        "endpoint": endpoint,
                        "payload": r.payload,
                    }
                    for r in refused
                ]
            )
            self._record_new_rejections(stream, rows)

    def refused_again(self, stream: str, endpoint: str, rows: pd.DataFrame) -> None:
        """Replayed items Connect refused again with a 400: new, non-retryable rejections."""
        if not self.dry_run and len(rows):
            self.state.record_rejections(self.report.run_id, stream, rows.assign(retryable=False))

    def replayed(self, rejection_ids: list[str]) -> None:
        """Rejections resolved by a replay (delivered now, delivered since, refused again)."""
        if not self.dry_run and rejection_ids:
            self.state.mark_replayed(rejection_ids)

    def settle(self, stream: str, cursor_table: str, newest: datetime | None, stats: Any) -> None:
        """Move the stream's cursor, only when nothing of it is left undelivered (items
        Connect refused with a 400 are recorded rejections, not undelivered)."""
        if stats.failed or stats.unsent:
            self.report.streams_failed.append(stream)
            log.error(
                "%s: %s items not delivered; cursor not moved",
                stream,
                len(stats.failed) + stats.unsent,
            )
            return
        newest = self.bounded(newest)
        self.settled[stream] = newest
        if self.dry_run or not self.moves_cursors or newest is None:
            return
        self.state.move_cursor(cursor_table, newest, self.report.run_id)

    def bounded(self, newest: datetime | None) -> datetime | None:
        """`newest`, but never past the run's horizon: rows loaded after it (a clock in the
        future) are read again by a later run, never skipped."""
        if newest is None or self.horizon is None:
            return newest
        return min(newest, self.horizon)

    def settle_partitions(
        self,
        cursor_tables: dict[str, str],
        partitions: int,
        results: list[PartitionResult],
        merge_report: Callable[[RunReport, dict[str, Any]], None],
    ) -> None:
        """The coordinating job: add the partitions' reports to this run's, then move each
        stream's cursor to the newest row any partition settled, only when every partition
        settled the stream (a failed or missing partition leaves the cursor where it is)."""
        report = self.report
        for result in results:
            merge_report(report, result.report)
        missing = set(range(partitions)) - {r.partition for r in results}
        for stream, cursor_table in cursor_tables.items():
            if missing or any(stream not in r.settled for r in results):
                if stream not in report.streams_failed:
                    report.streams_failed.append(stream)
                log.error("%s: not every partition succeeded; cursor not moved", stream)
                continue
            newest = [r.settled[stream] for r in results if r.settled[stream] is not None]
            if newest and self.moves_cursors and not self.dry_run:
                position = self.bounded(max(newest))
                assert position is not None
                self.state.move_cursor(cursor_table, position, report.run_id)


def _rejection_keys(rows: pd.DataFrame) -> pd.Series:
    """Each rejection's key: its message id, else its user id (None when neither)."""
    empty = pd.Series(None, index=rows.index, dtype=object)
    message = rows["message_id"] if "message_id" in rows.columns else empty
    user = rows["user_id"] if "user_id" in rows.columns else empty
    return message.where(message.notna(), user).astype("string")
