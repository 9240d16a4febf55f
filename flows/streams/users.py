"""Users: one identify per changed canonical user, merged over all of their identify rows."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from datetime import datetime

import pandas as pd
from connect_sync.connect.client import DeliveryStats
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.flows.streams.profiles import changed_only, ids_to_evaluate
from connect_sync.transforms.buckets import bucket_rows, user_buckets
from connect_sync.transforms.columns import identify_read_columns
from connect_sync.transforms.identity_columns import CANONICAL, who
from connect_sync.transforms.messages import drop_repeated, unique_rows
from connect_sync.transforms.rows import newest
from connect_sync.transforms.traits import chronological_rank, device_tokens, latest_traits
from connect_sync.transforms.users import IdentifyPayloads, identify_payloads, tokens_of
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.engine import release_unused_memory

log = logging.getLogger(__name__)


class UsersStream(Stream):
    """A run selects the users with new identify, alias or link rows, then reads every
    identify row of every id of each such user, so a partial identify never blanks an
    older trait; a user whose payload matches the last delivered fingerprint is skipped."""

    name = "users"
    table = "identifies"
    endpoint = "identify"
    keyed_by_message = False
    reads_links = True
    needs = ("aliases",)

    def run(self, context: RunContext) -> StreamResult:
        source = context.source
        columns = identify_read_columns(source.columns(self.table))
        window = context.window(self.cursor_table)
        if context.first_read(self.cursor_table):
            context.done_with_links(self.name)
            plan = self._buckets(context, columns)
            if plan is not None:
                return self._send(context, *plan)
            identifies = source.identifies(columns=columns)
            touched_max = newest(identifies, "uuid_ts")
        else:
            members = ids_to_evaluate(context, source.touched_ids(window), window)
            context.done_with_links(self.name)
            identifies = None
            if len(members):
                identifies = source.identifies(members.tolist(), columns)
                identifies = drop_repeated(identifies, keep="last")  # a row of two ids
            touched_max = None
        if identifies is None or identifies.empty:
            return StreamResult(touched_max, DeliveryStats())
        latest, tokens, kept_max = _latest_of(context, identifies)
        del identifies  # from here on one row per user
        release_unused_memory()
        return self._send(context, touched_max or kept_max, [(latest, tokens)], len(latest))

    def _buckets(
        self, context: RunContext, columns: list[str]
    ) -> tuple[datetime | None, Iterator[tuple[pd.DataFrame, pd.DataFrame]], int] | None:
        """A first read in buckets of canonical users (transforms.buckets), each bucket's
        rows read by their ids: (newest load time, each bucket's latest traits and tokens
        as it is read, users); None when one bucket holds them all (one whole-table read,
        and always where the warehouse bills by bytes scanned: `single_scan`)."""
        source = context.source
        if capabilities(source.engine.dialect.name).single_scan:
            return None
        ids = source.ids_rows(self.table)
        per_bucket = bucket_rows(context.settings.bucket_rows, len(columns))
        if int(ids["n_rows"].sum()) <= per_bucket:
            return None
        touched_max = newest(ids, "loaded")
        known = ids[ids["id"].notna()]
        canonical = context.graph.resolve(known["id"])
        scope = context.in_scope(canonical).to_numpy(dtype=bool)
        buckets = user_buckets(canonical[scope], known["n_rows"].to_numpy()[scope], per_bucket)
        del ids, known, canonical
        log.info("users: %s users in %s buckets of ~%s rows", len(buckets.users), len(buckets),
                 per_bucket)  # fmt: skip

        def read() -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
            for k in range(len(buckets)):
                members = context.graph.members(buckets[k])
                rows = source.identifies(members.tolist(), columns)
                rows = drop_repeated(rows, keep="last")  # a row of two ids
                del members
                if rows.empty:
                    continue
                latest, tokens, _ = _latest_of(context, rows)
                del rows
                release_unused_memory()
                yield latest, tokens

        return touched_max, read(), len(buckets.users)

    def _send(
        self,
        context: RunContext,
        touched_max: datetime | None,
        parts: Iterable[tuple[pd.DataFrame, pd.DataFrame]],
        users: int,
    ) -> StreamResult:
        """Send the identify payloads of each part's users (latest traits, tokens), in
        order, only those that changed."""
        pending: dict[str, str] = {}  # fingerprints of what is in flight, until acknowledged
        counts = context.report.stream(self.name)
        built = changed_only(context, counts, self._payloads(context, parts), pending)
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, built),  # built as they are sent
            context.books.fingerprints(pending),
            total=users,
            by_message_id=False,
        )
        counts.sent += stats.sent
        return StreamResult(touched_max, stats)

    def _payloads(self, context: RunContext, parts: Iterable[tuple[pd.DataFrame, pd.DataFrame]]):
        """(user ids, identify payloads, side records) of every user of each part,
        `chunk_size` users at a time, so only one chunk's payloads exist at once."""
        chunk, region = context.settings.chunk_size, context.settings.phone_default_region
        for latest, tokens in parts:

            def build(start: int, latest=latest, tokens=tokens) -> IdentifyPayloads:
                part = slice(start, start + chunk)
                return identify_payloads(latest.iloc[part], tokens.iloc[part], region)

            starts = range(0, len(latest), chunk)
            for built in built_ahead(build, starts, context.settings.build_threads):
                context.report.quality.update(built.quality)
                yield built.user_ids, built.payloads, Booked()


def _latest_of(
    context: RunContext, identifies: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame, datetime | None]:
    """The latest traits and the device tokens of the users of these identify rows (one
    row per user, sorted by canonical id), and the newest load time of the rows that count:
    the first row of each message, of a known user in scope. The others get no canonical
    id, which the transforms skip (no copy of the frame)."""
    canonical = context.graph.resolve(who(identifies))
    keep = (canonical.notna() & context.in_scope(canonical)).to_numpy(dtype=bool, copy=True)
    if (first := unique_rows(identifies["id"])) is not None:
        keep &= first
    if not keep.all():
        canonical = canonical.where(keep)
    identifies = identifies.assign(**{CANONICAL: canonical})
    del canonical
    kept_max = newest(identifies, "uuid_ts", rows=keep)
    # Tokens first: their working copies come and go before the latest traits exist.
    _, rank = chronological_rank(identifies)
    tokens = device_tokens(identifies, rank=rank)
    latest = latest_traits(identifies, rank=rank)
    del identifies, rank
    tokens = tokens_of(tokens, latest.index)  # each chunk takes its users' by position
    return latest, tokens, kept_max
