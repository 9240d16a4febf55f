"""Users: one identify per changed canonical user, merged over all of their identify rows."""

from __future__ import annotations

import pandas as pd
from connect_sync.connect.client import DeliveryStats
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.flows.streams.profiles import changed_only, ids_to_evaluate
from connect_sync.transforms.columns import identify_read_columns
from connect_sync.transforms.identity_columns import CANONICAL, who
from connect_sync.transforms.messages import drop_repeated, unique_rows
from connect_sync.transforms.rows import newest
from connect_sync.transforms.traits import chronological_rank, device_tokens, latest_traits
from connect_sync.transforms.users import IdentifyPayloads, identify_payloads, tokens_of
from connect_sync.warehouse.engine import release_unused_memory


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
        # Rows that count: the first row of each message, of a known user in scope. The
        # others get no canonical id, which the transforms skip (no copy of the frame).
        canonical = context.graph.resolve(who(identifies))
        keep = (canonical.notna() & context.in_scope(canonical)).to_numpy(dtype=bool, copy=True)
        if (first := unique_rows(identifies["id"])) is not None:
            keep &= first
        if not keep.all():
            canonical = canonical.where(keep)
        identifies = identifies.assign(**{CANONICAL: canonical})
        del canonical
        if touched_max is None:
            touched_max = newest(identifies, "uuid_ts", rows=keep)
        # Tokens first: their working copies come and go before the latest traits exist.
        _, rank = chronological_rank(identifies)
        tokens = device_tokens(identifies, rank=rank)
        latest = latest_traits(identifies, rank=rank)
        del identifies, rank  # from here on one row per user
        release_unused_memory()
        tokens = tokens_of(tokens, latest.index)  # each chunk takes its users' by position
        pending: dict[str, str] = {}  # fingerprints of what is in flight, until acknowledged
        counts = context.report.stream(self.name)
        built = changed_only(context, counts, self._payloads(context, latest, tokens), pending)
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, built),  # built as they are sent
            context.books.fingerprints(pending),
            total=len(latest),
            by_message_id=False,
        )
        counts.sent += stats.sent
        return StreamResult(touched_max, stats)

    def _payloads(self, context: RunContext, latest: pd.DataFrame, tokens: pd.DataFrame):
        """(user ids, identify payloads, side records) of every user, `chunk_size` users at
        a time, so only one chunk's payloads exist at once."""
        chunk, region = context.settings.chunk_size, context.settings.phone_default_region

        def build(start: int) -> IdentifyPayloads:
            part = slice(start, start + chunk)
            return identify_payloads(latest.iloc[part], tokens.iloc[part], region)

        starts = range(0, len(latest), chunk)
        for built in built_ahead(build, starts, context.settings.build_threads):
            context.report.quality.update(built.quality)
            yield built.user_ids, built.payloads, Booked()
