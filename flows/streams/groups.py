"""Groups: one identify {user_id, group_id, group_attributes} per changed (user, group)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import compress

from connect_sync.connect.client import DeliveryStats, ItemChunk
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.flows.streams.profiles import changed_only, ids_to_evaluate
from connect_sync.transforms.groups import (
    current_groups,
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
        # in two phases: every other group first, the current groups once those are
        # delivered, so concurrent batches (or a killed run's batch sent again) never put an
        # older group after the current one
        current: list[ItemChunk] = []
        acknowledged = context.books.fingerprints(pending)
        stats = context.send(
            self.name,
            self.endpoint,
            context.books.booked(self.name, _others_first(sending, current)),
            acknowledged,
            total=len(built.keys),
            by_message_id=self.keyed_by_message,
        )
        stats.merge(
            context.send(
                self.name,
                self.endpoint,
                current,
                acknowledged,
                total=sum(map(len, current)),
                by_message_id=self.keyed_by_message,
            )
        )
        counts.sent += stats.sent
        return StreamResult(touched_max, stats)


def _others_first(
    chunks: Iterable[tuple[ItemChunk, Booked]], current: list[ItemChunk]
) -> Iterator[tuple[ItemChunk, Booked]]:
    """Each chunk without its users' current groups, which go to `current` meanwhile."""
    for chunk, side in chunks:
        last = current_groups(chunk.keys)
        current.append(_where(chunk, last))
        yield _where(chunk, [not flag for flag in last]), side


def _where(chunk: ItemChunk, flags: list[bool]) -> ItemChunk:
    return ItemChunk(list(compress(chunk.keys, flags)), list(compress(chunk.payloads, flags)))
