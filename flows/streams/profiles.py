"""What the change-detected streams (users, groups) share: which users a run re-evaluates,
and sending only the payloads that differ from the last one delivered."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import compress

import pandas as pd
from connect_sync.connect.client import ItemChunk
from connect_sync.flows.books import Booked
from connect_sync.flows.context import RunContext
from connect_sync.flows.report import StreamCounts
from connect_sync.transforms.changes import fingerprints
from connect_sync.warehouse.segment import Window


def ids_to_evaluate(context: RunContext, touched: pd.Series, window: Window) -> pd.Series:
    """Every id of every user (in this job's scope) with new rows in the window, new links,
    or alias rows read by this run: a user is re-evaluated over all of their rows, so a
    partial call never blanks an older trait."""
    parts = [touched.astype(str), context.links_in(window)]
    if context.alias_rows is not None:
        parts += [context.alias_rows["previous_id"], context.alias_rows["user_id"]]
    canonical = context.graph.resolve(pd.concat(parts).dropna().astype(str))
    if context.scoped:  # pushdown: read only the rows of this job's users
        canonical = canonical[context.in_scope(canonical)]
    return context.graph.members(canonical)


def changed_only(
    context: RunContext,
    counts: StreamCounts,
    built: Iterable[tuple[list[str], list[bytes], Booked]],
    pending: dict[str, str],
    widen: Callable[[list[str], list[bool]], list[bool]] | None = None,
    digests_of: Callable[[list[str], list[bytes]], list[str]] | None = None,
) -> Iterator[tuple[ItemChunk, Booked]]:
    """Each chunk of (keys, payloads, side records) without the payloads identical to the
    last delivered one (all of them on a full refresh); the fingerprints of those sent wait
    in `pending` until acknowledged. `widen(keys, changed)`, if given, adds keys to send
    (unchanged ones that must follow a changed one); `digests_of(keys, payloads)`, if given,
    fingerprints the chunk instead of the payloads alone."""
    remember = not context.options.dry_run
    for keys, payloads, side in built:
        counts.considered += len(payloads)
        previous = {} if context.options.full_refresh else context.state.fingerprints(keys)
        if not previous and not remember:  # nothing to compare or to remember
            yield ItemChunk(keys, payloads), side
            continue
        digests = fingerprints(payloads) if digests_of is None else digests_of(keys, payloads)
        changed = [previous.get(k) != d for k, d in zip(keys, digests, strict=True)]
        if widen is not None:
            changed = widen(keys, changed)
        counts.unchanged += len(changed) - sum(changed)
        keys = list(compress(keys, changed))
        if remember:
            pending.update(zip(keys, compress(digests, changed), strict=True))
        yield ItemChunk(keys, list(compress(payloads, changed))), side
