"""Merges: alias calls, and anonymous profiles folded into their user."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import pandas as pd
from connect_sync.connect.client import DeliveryStats, ItemChunk
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.transforms.events import dedupe_messages
from connect_sync.transforms.rows import newest, utc_times
from connect_sync.warehouse.segment import SegmentSource

log = logging.getLogger(__name__)

#: A source without an `aliases` table: no alias call yet, but folds still happen.
NO_ALIASES = pd.DataFrame(
    {c: pd.Series(dtype=object) for c in ("id", "previous_id", "user_id", "anonymous_id")}
)


class AliasesStream(Stream):
    """Merge calls, sent before every other call of the run.

    Each alias row becomes one identify {user_id, previous_id}, delivered once across runs
    (book `alias`). The user_id sent is the canonical id of the row's target (the row's own
    user_id unless a later alias moved it on), so a chain A -> B -> C arrives as merges into
    C whatever order the batches land in; a row whose previous id is that canonical id (the
    root of an alias cycle) merges nothing and is booked without a call. Then anonymous
    profiles delivered in earlier runs and since linked to a user are folded into it the
    same way.
    """

    name = "aliases"
    table = "aliases"
    endpoint = "identify"
    book = "alias"
    partitioned = False
    reads_links = True

    def available(self, source: SegmentSource) -> bool:
        return True  # without alias rows, anonymous profiles are still folded

    def run(self, context: RunContext) -> StreamResult:
        books, report = context.books, context.report
        counts = report.stream(self.name)
        rows = (
            context.source.aliases(context.window(self.cursor_table))
            if context.source.has(self.table)
            else NO_ALIASES
        )
        context.alias_rows = rows
        rows, _ = dedupe_messages(rows)
        rows = rows[rows["previous_id"].notna() & rows["user_id"].notna()]
        if context.scoped:  # an audience or a partition counts only its own rows
            canonical = context.graph.resolve(rows["user_id"].astype(str))
            rows = rows[context.in_scope(canonical).to_numpy(dtype=bool)]
        ids = rows["id"].astype(str)
        done = context.state.delivered_among(self.book, ids)
        fresh = rows[~ids.isin(done)]
        counts.unchanged += len(rows) - len(fresh)
        message_ids = fresh["id"].astype(str)
        previous = fresh["previous_id"].astype(str)
        target = context.graph.resolve(fresh["user_id"].astype(str))
        noop = (previous == target).to_numpy(dtype=bool)
        if noop.any():
            log.info("aliases: %s rows merge an id into itself (alias cycles)", int(noop.sum()))
            books.delivered(self.book)(message_ids[noop].tolist())
        # from lists: iterating Arrow-backed Series costs ~1 us a value
        targets, previous_ids = target[~noop].tolist(), previous[~noop].tolist()
        merges = ItemChunk(
            message_ids[~noop].tolist(),
            [{"user_id": u, "previous_id": p} for u, p in zip(targets, previous_ids, strict=True)],
        )
        stats = context.send(
            self.name, self.endpoint, [merges], books.delivered(self.book), by_message_id=True
        )
        counts.sent += stats.sent
        folds = self._fold_anonymous_profiles(context)
        counts.sent += folds.sent
        report.profiles_folded += folds.sent
        stats.failed = [*stats.failed, *folds.failed]
        stats.unsent += folds.unsent  # a fold never tried leaves the stream unsettled too
        # The stage handled every link read (its merges and folds): its cursor is the
        # newest of them, so the next run folds only what links loaded since then join.
        times = [t for t in (newest(rows, "uuid_ts"), newest(context.links, "loaded")) if t]
        return StreamResult(max(times, default=None), stats)

    def _fold_anonymous_profiles(self, context: RunContext) -> DeliveryStats:
        """identify {user_id: canonical, previous_id: anonymous id} for each anonymous id
        Connect holds a profile for (an identify or events delivered under it in an earlier
        run) that identify/track rows have since joined to a user, so Connect moves that
        profile's traits and events to the user. Ids moved by an alias row are left to
        its merge call. Folded ids lose their fingerprint: they are no profile any more."""
        assert context.links is not None
        since = self._links_since(context)
        among = None
        if since is not None:
            loaded = utc_times(context.links["loaded"])
            recent = context.links[(loaded >= since).fillna(False).to_numpy(dtype=bool)]
            among = pd.concat([recent["from_id"], recent["to_id"]])
        candidates = context.graph.attached_among(among)
        if context.scoped and len(candidates):
            canonical = context.graph.resolve(pd.Series(candidates, dtype=object))
            candidates = candidates[context.in_scope(canonical).to_numpy(dtype=bool)]
        stale = sorted(context.state.profiles_among(candidates)) if len(candidates) else []
        if not stale:
            return DeliveryStats()
        canonical = context.graph.resolve(pd.Series(stale, dtype=object)).tolist()
        folds = ItemChunk(
            stale,
            [
                {"user_id": user, "previous_id": anon}
                for anon, user in zip(stale, canonical, strict=True)
            ],
        )
        log.info("identity: folding %s earlier anonymous profiles into their users", len(folds))
        return context.send(
            self.name, self.endpoint, [folds], context.books.forgotten(), by_message_id=True
        )

    def _links_since(self, context: RunContext) -> datetime | None:
        """Links loaded since this time are new to this stage (which folds what they join);
        None when every link may be (no cursor yet, full refresh, backfill)."""
        if context.options.backfill is not None:
            return None
        cursor = context.cursors.get(self.cursor_table)
        if cursor is None:
            return None
        return cursor - timedelta(hours=context.settings.lookback_hours)
