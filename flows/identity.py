"""The run's identity graph: cached, updated with the links loaded since, or resolved anew.

Segment's tables are append-only, so a link table that still holds exactly the rows it
held up to the cached cut-off holds the same links: the cached graph stands, and only the
links of rows loaded since are read and resolved (with the groups they touch). Anything
else (no cache, rows deleted or loaded out of order, rows without a load time, a full
refresh) reads and resolves every link, as a run without a cache does.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
from connect_sync.transforms.identity import (
    IdentityGraph,
    graph_from_tables,
    graph_tables,
    merge_links,
    resolve_identities,
    update_identities,
)
from connect_sync.warehouse.identity_cache import CachedIdentities, IdentityCache, LinkMark
from connect_sync.warehouse.segment import LINK_TABLES, SegmentSource

log = logging.getLogger(__name__)

#: Before any load time: the lower bound of a read of every link.
ALL_TIME = datetime(1900, 1, 1, tzinfo=UTC)
#: After any load time: the cut-off that counts every row.
NO_CUT_OFF = datetime(2200, 1, 1, tzinfo=UTC)


@dataclass
class RunIdentities:
    links: pd.DataFrame
    graph: IdentityGraph
    #: `cached` (no new link), `updated` (new links resolved with the groups they touch)
    #: or `resolved` (every link read and resolved).
    how: str
    #: Links read from the warehouse by this run.
    links_read: int


def run_identities(
    source: SegmentSource, cache: IdentityCache, refresh: bool = False
) -> RunIdentities:
    """The identity graph for this run (see the module docstring); the cache is brought up
    to date when it was used or can be started."""
    cached = None if refresh else cache.load()
    stats = source.identity_link_stats(_cut_off(cached)).set_index("kind")
    kinds = list(stats.index)  # the link sources the schema has
    if (stats["rows_all"] != stats["rows_loaded"]).any():
        log.info("identity: link rows without a load time (uuid_ts): no cache, every link read")
        cache.clear()
        links = source.identity_links()
        return RunIdentities(links, resolve_identities(links), "resolved", len(links))
    if cached is not None and (
        set(cached.marks) != set(kinds)  # a link table appeared (or went)
        or any(int(stats.at[k, "rows_until"]) != cached.marks[k].rows for k in kinds)
    ):
        log.info("identity: link tables changed under the cached graph; resolving again")
        cached = None
    since = {k: cached.marks[k].until if cached else ALL_TIME for k in kinds}
    marks = {
        k: LinkMark(
            max(_newest(stats.at[k, "loaded_max"]), since[k]), int(stats.at[k, "rows_loaded"])
        )
        for k in kinds
    }
    new = source.identity_links_loaded(since, {k: mark.until for k, mark in marks.items()})
    if cached is None:
        links, graph, how = new, resolve_identities(new), "resolved"
    elif not len(new):
        return RunIdentities(cached.links, graph_from_tables(cached.graph), "cached", 0)
    else:
        graph = update_identities(graph_from_tables(cached.graph), cached.links, new)
        links, how = merge_links(cached.links, new), "updated"
    cache.save(CachedIdentities(links, graph_tables(graph), marks))
    return RunIdentities(links, graph, how, len(new))


def _cut_off(cached: CachedIdentities | None) -> dict[str, datetime]:
    """Per link kind, the load time the cached graph covers (every row without a cache)."""
    marks = cached.marks if cached is not None else {}
    return {k: marks[k].until if k in marks else NO_CUT_OFF for k in LINK_TABLES}


def _newest(value: object) -> datetime:
    """A table's newest load time as an aware UTC datetime (ALL_TIME when it has none)."""
    if value is None or pd.isna(value):
        return ALL_TIME
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp.tz_convert(UTC)
    return stamp.to_pydatetime()
