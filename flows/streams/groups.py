"""Groups: one identify {user_id, group_id, group_attributes} per changed (user, group)."""

from __future__ import annotations

from connect_sync.connect.client import DeliveryStats
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.flows.streams.profiles import changed_only, ids_to_evaluate
from connect_sync.transforms.groups import (
    group_fingerprints,
    group_payloads,
    user_aligned_chunks,
    with_current_group,
)
from connect_sync.transforms.identity_columns import CANONICAL, who
from connect_sync.transforms.messages import drop_repeated, unique_rows
from connect_sync.transforms.rows import newest


class GroupsStream(Stream):
    """A run re-evaluates every user with new group rows (or new links), over all of the
    group rows of all of their ids, so the attributes are the latest non-null value per
    trait over every call; a (user, group) whose payload matches the last delivered
    fingerprint is skipped."""

    name = "groups"
    table = "groups"
    endpoint = "identify"
    #: Refused items are recorded by their (user, group) key, which replay sends again.
    keyed_by_message = True
    reads_links = True
    needs = ("aliases",)

    def run(self, context: RunContext) -> StreamResult:
        source = context.source
        window = context.window(self.cursor_table)
        if context.first_read(self.cursor_table):
            context.done_with_links(self.name)
            rows = source.calls(self.table, window)
        else:
            members = ids_to_evaluate(context, source.touched_ids_in(self.table, window), window)
            context.done_with_links(self.name)
            rows = source.rows_for_ids(self.table, members.tolist()) if len(members) else None
        if rows is None or rows.empty:
            return StreamResult(None, DeliveryStats())
        rows = drop_repeated(rows, keep="last")  # a message id read twice counts once
        canonical = context.graph.resolve(who(rows))
        # rows of nobody are rejected with their reason, once (by partition 0 when split)
        nobody = canonical.isna() & (context.options.partition in (None, 0))
        keep = (nobody | context.in_scope(canonical)).to_numpy(dtype=bool, copy=True)
        if (first := unique_rows(rows["id"])) is not None:
            keep &= first
        rows = rows[keep].assign(**{CANONICAL: canonical[keep]})
        touched_max = newest(rows, "uuid_ts")
        built = group_payloads(rows)
        context.report.quality.update(built.quality)
        counts = context.report.stream(self.name)
        pending: dict[str, str] = {}
        chunk = context.settings.chunk_size
        parts = (
            (
                built.keys[start:end],
                built.payloads[start:end],
                Booked(rejected=built.rejected if start == 0 else None),
            )
            for start, end in user_aligned_chunks(built.keys, chunk)
        )
        # a user's current group is sent last, and again after any other group that changed
        sending = changed_only(
            context,
            counts,
            parts,
            pending,
            widen=with_current_group,
            digests_of=group_fingerprints,
        )
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, sending),
            context.books.fingerprints(pending),
            total=len(built.keys),
            by_message_id=self.keyed_by_message,
        )
        counts.sent += stats.sent
        return StreamResult(touched_max, stats)
