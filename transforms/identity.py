"""Identity resolution: links between ids form groups, each with one canonical id.

A link says two ids are one person: an `aliases` row (`previous_id` -> `user_id`) or an
`identifies`/`tracks` row carrying both an `anonymous_id` and a `user_id`. Resolution is
vectorized end to end (numpy, pandas and scipy.sparse.csgraph); no Python runs per link.

How each id finds its canonical id (mapping.md, Identity):

- A *user id* (the `user_id` end of any link) that no alias moved away is a **root**: it
  is its own canonical id. Roots are never merged with each other by inference.
- An id moved away by aliases points to the target of its most recent alias row; chains
  (A -> B -> C) are followed to their end, so the canonical id is the most recent target.
- Any other id (an anonymous id) points to the user id of its most recent link.
- A cycle of aliases (A -> B -> A) has no end: the target of its most recent alias row
  becomes the root. Cycles are reported, never a crash.

**Conflicts.** A group of linked ids holding two or more roots is a conflict: typically two
people who signed in on one shared device, so their user ids are linked only through an
anonymous id. Merging them would fold two real people into one Connect profile, which
cannot be undone, so the job does not: each user id stays its own canonical id, and every
anonymous id of the group is attached to the user id it was most recently seen with (an
alias of the anonymous id wins over identify/track links). Conflicting groups are reported
with their ids so a person can decide.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.transforms.identity_columns import blank_text_as_null
from connect_sync.transforms.kernels import kernel
from connect_sync.transforms.values import positions_in

LINK_KINDS = ("alias", "identify", "track")


@dataclass(frozen=True)
class IdentityGraph:
    """The resolved identities of one source schema, as aligned Arrow/numpy columns.

    `ids` lists every linked id and `roots` its canonical id (canonical ids map to
    themselves; ids with no links are absent and resolve to themselves). `attached_mask`
    marks the ids that resolve to another id without an alias of their own (anonymous ids
    joined to a user by identify/track rows). `labels` numbers the connected groups of
    linked ids, so that new links re-resolve only the groups they touch
    (`update_identities`). `conflicts` and `cycles` list the groups to report: one row per
    group with `ids` (every id of it) and `canonical_ids` (its canonical ids).

    Nothing here holds a Python object per id: at millions of ids the pandas views
    (`canonical`, `attached`) are built only when asked for.
    """

    ids: pa.Array
    roots: pa.Array
    conflicts: pd.DataFrame
    cycles: pd.DataFrame
    attached_mask: np.ndarray
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)

    def resolve(self, ids: pd.Series) -> pd.Series:
        """The canonical id of each id (itself when it has no links); nulls stay null.

        Arrow hash lookups over whole columns: 4-6x faster than `Series.map` on object ids
        at millions of rows. The smaller side is hashed: a few thousand ids of an
        incremental run are looked up without hashing a million-id graph."""
        values = _strings(ids)
        moved, targets = self._moved
        if len(values) * 4 < len(moved):
            wanted = pc.unique(values.drop_null())
            found = pc.index_in(moved, value_set=wanted)  # graph id -> wanted position
            where = np.full(len(wanted), -1, dtype=np.int64)
            hit = np.asarray(pc.fill_null(found, -1), dtype=np.int64)
            where[hit[hit >= 0]] = np.flatnonzero(hit >= 0)
            roots = pc.take(targets, pa.array(where, mask=where < 0))
            mapped = pc.take(roots, pc.index_in(values, value_set=wanted))
        else:
            where = positions_in(values, moved)
            mapped = pc.take(targets, pa.array(where, mask=where < 0))
        resolved = pd.Series(
            pd.arrays.ArrowExtensionArray(pc.coalesce(mapped, values)), index=ids.index
        )
        return resolved.astype(ids.dtype)

    @cached_property
    def _moved(self) -> tuple[pa.Array, pa.Array]:
        """The ids whose canonical id is another id, and those canonical ids: the only ids
        a lookup has to find (every other id, linked or not, resolves to itself)."""
        moved = pc.not_equal(self.ids, self.roots)
        return self.ids.filter(moved), self.roots.filter(moved)

    def members(self, canonical_ids: pd.Series | list[str]) -> pd.Series:
        """Every id, canonical ones included, of the given groups."""
        wanted = pd.Series(canonical_ids, dtype=object).dropna()
        wanted = _strings(pd.Series(pd.unique(wanted), dtype=object))
        linked = self.ids.filter(pc.is_in(self.roots, value_set=wanted))
        both = pc.unique(pa.concat_arrays([wanted, linked]))
        return pd.Series(np.sort(both.to_numpy(zero_copy_only=False)), dtype=object)

    def attached_among(self, ids: pd.Series | None = None) -> pd.Index:
        """The attached ids (see the class docstring), of `ids` only when given."""
        wanted = pa.array(self.attached_mask)
        if ids is not None:
            wanted = pc.and_(wanted, pc.is_in(self.ids, value_set=_strings(ids.dropna())))
        return pd.Index(self.ids.filter(wanted).to_pylist(), dtype=object)

    @cached_property
    def canonical(self) -> pd.Series:
        """Canonical id by linked id, as a Series of Python strings."""
        index = pd.Index(self.ids.to_numpy(zero_copy_only=False), dtype=object)
        return pd.Series(self.roots.to_numpy(zero_copy_only=False), index=index, dtype=object)

    @property
    def attached(self) -> pd.Index:
        return self.attached_among()

    def examples(self, limit: int = 5) -> list[str]:
        """A few conflicts and cycles, one readable line each, for the report and the log."""
        lines = []
        for ids, canonical in zip(
            self.conflicts["ids"][:limit], self.conflicts["canonical_ids"][:limit], strict=True
        ):
            lines.append(
                f"conflict: user ids {_few(canonical)} are linked (group {_few(ids)}); "
                "kept apart, anonymous ids attached to the most recent"
            )
        for ids, canonical in zip(
            self.cycles["ids"][:limit], self.cycles["canonical_ids"][:limit], strict=True
        ):
            lines.append(f"alias cycle: {_few(ids)}; canonical {_few(canonical)}")
        return lines


def _few(ids: list[str], limit: int = 8) -> str:
    shown = ", ".join(ids[:limit])
    return shown if len(ids) <= limit else f"{shown} and {len(ids) - limit} more"


def empty_links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "from_id": pd.Series(dtype=object),
            "to_id": pd.Series(dtype=object),
            "kind": pd.Series(dtype=object),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    )


def _empty_groups() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "component": pd.Series(dtype="int64"),
            "ids": pd.Series(dtype=object),
            "canonical_ids": pd.Series(dtype=object),
        }
    )


def _epoch_us(values: pd.Series) -> np.ndarray:
    """Microseconds since the epoch as int64; a missing time sorts first (oldest)."""
    dtype = values.dtype
    if isinstance(dtype, pd.ArrowDtype) and pa.types.is_timestamp(dtype.pyarrow_dtype):
        # Arrow timestamps are epoch-based whatever their zone: cast in Arrow, never
        # through Python datetimes (pd.to_datetime does that per value: seconds at 1M+).
        micros = pc.cast(pa.array(values), pa.timestamp("us", tz="UTC")).cast(pa.int64())
        missing = np.iinfo(np.int64).min
        return np.asarray(pc.fill_null(micros, missing).to_numpy(), dtype=np.int64)
    stamps = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    return np.asarray(stamps.array.asi8, dtype=np.int64)


def _strings(values: pd.Series) -> pa.Array:
    """Ids as one Arrow string array, whatever type the driver returned; a blank id
    (empty or whitespace: Segment's `user_id = ''`) is no id."""
    array = pa.array(values.astype(pd.ArrowDtype(pa.large_string())))
    array = array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array
    return blank_text_as_null(array)


def _encode(ids: pa.Array) -> tuple[np.ndarray, pa.Array]:
    """Integer codes numbering the distinct ids in sorted order, and those ids.

    Sorted codes make every tie-break deterministic whatever order the SQL returned.
    Arrow's dictionary encoding, then a sort of the distinct ids only: on 3.4M ids (1.75M
    distinct) 1.4 s and 184 MB at its peak, against 1.8 s and 440 MB kept by polars'
    unique, sort and join (`benchmarks/identity.py`)."""
    encoded = pc.dictionary_encode(ids)
    order = np.asarray(pc.sort_indices(encoded.dictionary))
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.arange(len(order))
    return rank[np.asarray(encoded.indices)], encoded.dictionary.take(pa.array(order))


def _last_per_group(groups: np.ndarray, *keys: np.ndarray) -> np.ndarray:
    """Positions of the last element of each group after sorting by `keys` (first key
    most significant) within the group; in group order."""
    if not len(groups):
        return np.zeros(0, dtype=np.int64)
    matrix = np.empty((len(keys), len(groups)), dtype=np.int64)
    for row, key in enumerate(keys):
        matrix[row] = key
    last_by_keys = kernel("last_by_keys")
    best = last_by_keys(groups.astype(np.int64, copy=False), matrix, int(groups.max()) + 1)
    return best[best >= 0]


def resolve_identities(links: pd.DataFrame) -> IdentityGraph:
    """Resolve the link graph: the canonical id of every linked id, plus what to report.

    `links` has `from_id` (previous or anonymous id), `to_id` (a user id), `kind`
    (`alias`, `identify`, `track`) and `ts` (the link's latest time); other columns are
    ignored. See the module docstring for the rules.
    """
    from_ids, to_ids = _strings(links["from_id"]), _strings(links["to_id"])
    usable = pc.and_(pc.not_equal(from_ids, to_ids), pc.is_valid(from_ids))
    keep = np.asarray(pc.fill_null(pc.and_(usable, pc.is_valid(to_ids)), False), dtype=bool)
    if not keep.any():
        return empty_graph()
    mask = pa.array(keep)
    kinds = pa.array(links["kind"].astype(pd.ArrowDtype(pa.string())))
    is_alias = np.asarray(pc.fill_null(pc.equal(kinds, "alias"), False), dtype=bool)[keep]
    ts = _epoch_us(links["ts"])[keep]

    codes, nodes = _encode(pa.concat_arrays([from_ids.filter(mask), to_ids.filter(mask)]))
    n, m = len(nodes), int(keep.sum())
    src, dst = codes[:m], codes[m:]

    is_user = np.zeros(n, dtype=bool)
    is_user[dst] = True
    aliased = np.zeros(n, dtype=bool)
    aliased[src[is_alias]] = True

    # One parent per non-root id: its latest alias target, else (anonymous ids only) the
    # user id of its latest link.
    candidate = is_alias | (~aliased[src] & ~is_user[src])
    c_src, c_dst = src[candidate], dst[candidate]
    chosen = _last_per_group(c_src, is_alias[candidate].astype(np.int8), ts[candidate], c_dst)
    parent = np.arange(n, dtype=np.int64)
    parent[c_src[chosen]] = c_dst[chosen]

    _break_parent_cycles(parent, src, dst, is_alias, ts)
    while True:  # pointer jumping: log2(longest chain) passes
        grand = parent[parent]
        if np.array_equal(grand, parent):
            break
        parent = grand

    component = _components(src, dst, n)
    return IdentityGraph(
        ids=nodes,
        roots=nodes.take(pa.array(parent)),
        conflicts=_conflicts(component, parent, nodes),
        cycles=_alias_cycles(src[is_alias], dst[is_alias], parent, nodes),
        attached_mask=(parent != np.arange(n)) & ~aliased,
        labels=component,
    )


def empty_graph() -> IdentityGraph:
    none = pa.array([], pa.large_string())
    return IdentityGraph(
        none, none, _empty_groups(), _empty_groups(), np.zeros(0, bool), np.zeros(0, np.int64)
    )


def update_identities(
    graph: IdentityGraph, links: pd.DataFrame, new: pd.DataFrame
) -> IdentityGraph:
    """The graph of `links` plus `new` links, given `graph` resolved from `links` alone.

    Resolution is decided within each connected group, so only the groups the new links
    touch are resolved again (with every link they hold); every other id keeps its
    canonical id. The result equals `resolve_identities` of all the links, up to the
    order of ids and the numbering of groups.
    """
    fresh = _usable_ids(new)
    if not len(fresh):
        return graph
    found = pc.index_in(fresh, value_set=graph.ids).drop_null().to_numpy()
    moving = np.isin(graph.labels, np.unique(graph.labels[found]))
    moved = graph.ids.filter(pa.array(moving))
    touching = pc.or_(
        pc.is_in(_strings(links["from_id"]), value_set=moved),
        pc.is_in(_strings(links["to_id"]), value_set=moved),
    )
    old = links[np.asarray(pc.fill_null(touching, False), dtype=bool)]
    part = resolve_identities(pd.concat([old, new]))
    offset = int(graph.labels.max()) + 1 if len(graph.labels) else 0
    keep = pa.array(~moving)
    affected = set(moved.to_pylist()) | set(fresh.to_pylist())
    return IdentityGraph(
        ids=pa.concat_arrays([graph.ids.filter(keep), part.ids]),
        roots=pa.concat_arrays([graph.roots.filter(keep), part.roots]),
        conflicts=_merge_groups(graph.conflicts, part.conflicts, affected, offset),
        cycles=_merge_groups(graph.cycles, part.cycles, affected, offset),
        attached_mask=np.concatenate([graph.attached_mask[~moving], part.attached_mask]),
        labels=np.concatenate([graph.labels[~moving], part.labels + offset]),
    )


def merge_links(links: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """One row per (from_id, to_id, kind) of both frames, with its latest `ts` and `loaded`
    (as the warehouse query would return them all). Only the rows of `links` that share
    a `from_id` with a new link are grouped again."""
    keys = ["from_id", "to_id", "kind"]
    columns = [*keys, "ts", "loaded"]
    old = pa.Table.from_pandas(links[columns], preserve_index=False)
    fresh = pa.Table.from_pandas(new[columns], preserve_index=False)
    fresh = fresh.cast(old.schema) if len(old) else fresh
    shared = pc.is_in(old.column("from_id"), value_set=fresh.column("from_id").combine_chunks())
    shared = pc.fill_null(shared, False)
    regroup = pa.concat_tables([old.filter(shared), fresh])
    grouped = regroup.group_by(keys, use_threads=False).aggregate(
        [("ts", "max"), ("loaded", "max")]
    )
    grouped = grouped.select([*keys, "ts_max", "loaded_max"]).rename_columns(columns)
    merged = pa.concat_tables([old.filter(pc.invert(shared)), grouped.cast(old.schema)])
    return merged.to_pandas(types_mapper=pd.ArrowDtype)


def _usable_ids(links: pd.DataFrame) -> pa.Array:
    """Both ids of every link that joins two different ids, once each."""
    from_ids, to_ids = _strings(links["from_id"]), _strings(links["to_id"])
    usable = pc.fill_null(pc.not_equal(from_ids, to_ids), False)
    return pc.unique(pa.concat_arrays([from_ids.filter(usable), to_ids.filter(usable)]))


def _merge_groups(
    old: pd.DataFrame, new: pd.DataFrame, affected: set[str], offset: int
) -> pd.DataFrame:
    """Reported groups: the old ones no affected id is part of, then the re-resolved ones."""
    untouched = [not any(i in affected for i in ids) for ids in old["ids"]]  # few groups
    merged = pd.concat(
        [old[np.asarray(untouched, dtype=bool)], new.assign(component=new["component"] + offset)],
        ignore_index=True,
    )
    return merged.astype({"component": "int64"}) if len(merged) else _empty_groups()


def _break_parent_cycles(
    parent: np.ndarray, src: np.ndarray, dst: np.ndarray, is_alias: np.ndarray, ts: np.ndarray
) -> None:
    """Make the most recent alias target of each cycle of parents its root (in place)."""
    n = len(parent)
    moving = np.flatnonzero(parent != np.arange(n))
    if not len(moving):
        return
    from scipy.sparse import coo_matrix  # scipy: when a graph is built
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix(
        (np.ones(len(moving), dtype=np.int8), (moving, parent[moving])), shape=(n, n)
    ).tocsr()
    _, label = connected_components(graph, directed=True, connection="strong")
    size = np.bincount(label)
    in_cycle = size[label] > 1
    if not in_cycle.any():
        return
    # Only aliases close a cycle of parents: anonymous ids are never anyone's parent.
    inner = is_alias & in_cycle[src] & in_cycle[dst] & (label[src] == label[dst])
    last = _last_per_group(label[src[inner]], ts[inner], dst[inner])
    roots = dst[inner][last]
    parent[roots] = roots


def _components(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """The connected group of each of the n ids, as a label."""
    from scipy.sparse import coo_matrix  # scipy: when a graph is built
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n))
    _, component = connected_components(graph, directed=False)
    return np.asarray(component, dtype=np.int64)


def _conflicts(component: np.ndarray, parent: np.ndarray, nodes: pa.Array) -> pd.DataFrame:
    """Groups of linked ids (connected components) holding more than one canonical id."""
    roots = pd.DataFrame({"component": component, "root": parent}).drop_duplicates()
    per_component = roots["component"].value_counts()
    wanted = per_component.index[per_component.to_numpy() > 1]
    return _groups(component, parent, nodes, wanted)


def _alias_cycles(
    src: np.ndarray, dst: np.ndarray, parent: np.ndarray, nodes: pa.Array
) -> pd.DataFrame:
    """Ids that aliases lead around in a circle (A -> B -> A), one row per cycle."""
    n = len(nodes)
    if not len(src):
        return _empty_groups()
    from scipy.sparse import coo_matrix  # scipy: when a graph is built
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(src), dtype=np.int8), (src, dst)), shape=(n, n)).tocsr()
    _, label = connected_components(graph, directed=True, connection="strong")
    size = np.bincount(label)
    wanted = np.flatnonzero(size > 1)
    return _groups(label, parent, nodes, wanted)


def _groups(
    label: np.ndarray, parent: np.ndarray, nodes: pa.Array, wanted: np.ndarray | pd.Index
) -> pd.DataFrame:
    """One row per wanted label: sorted member ids and sorted canonical ids."""
    if not len(wanted):
        return _empty_groups()
    members = np.flatnonzero(np.isin(label, np.asarray(wanted)))
    frame = pd.DataFrame(
        {
            "component": label[members],
            "id": nodes.take(pa.array(members)).to_numpy(zero_copy_only=False),
            "root": nodes.take(pa.array(parent[members])).to_numpy(zero_copy_only=False),
        }
    ).sort_values(["component", "id"], kind="stable")
    grouped = frame.groupby("component", sort=True)
    ids = grouped["id"].agg(list)
    canonical_ids = grouped["root"].agg(lambda s: sorted(set(s)))
    return pd.DataFrame(
        {"component": ids.index.to_numpy(), "ids": ids.to_list(), "canonical_ids": canonical_ids}
    ).reset_index(drop=True)


# -- the graph as Arrow tables (the identity cache keeps these) ------------------------

_ID = pa.large_string()
_GROUP_SCHEMA = pa.schema(
    [
        ("report", pa.string()),
        ("component", pa.int64()),
        ("ids", pa.list_(_ID)),
        ("canonical_ids", pa.list_(_ID)),
    ]
)


def graph_tables(graph: IdentityGraph) -> dict[str, pa.Table]:
    """The graph as Arrow tables: `graph` (per id) and `groups` (conflicts, cycles)."""
    return {"graph": _graph_table(graph), "groups": _groups_table(graph)}


def _graph_table(graph: IdentityGraph) -> pa.Table:
    return pa.table(
        {
            "id": graph.ids,
            "canonical": graph.roots,
            "component": pa.array(graph.labels),
            "attached": pa.array(graph.attached_mask),
        }
    )


def _groups_table(graph: IdentityGraph) -> pa.Table:
    parts = []
    for report, frame in (("conflict", graph.conflicts), ("cycle", graph.cycles)):
        parts.append(
            pa.table(
                {
                    "report": pa.array([report] * len(frame), pa.string()),
                    "component": pa.array(frame["component"].to_numpy(dtype="int64")),
                    "ids": pa.array(frame["ids"].tolist(), pa.list_(_ID)),
                    "canonical_ids": pa.array(frame["canonical_ids"].tolist(), pa.list_(_ID)),
                },
                schema=_GROUP_SCHEMA,
            )
        )
    return pa.concat_tables(parts)


def graph_from_tables(tables: dict[str, pa.Table]) -> IdentityGraph:
    """The graph kept by `graph_tables`."""
    table, groups = tables["graph"], tables["groups"]

    def column(name: str) -> pa.Array:
        return table.column(name).combine_chunks()

    def reported(kind: str) -> pd.DataFrame:
        part = groups.filter(pc.equal(groups.column("report"), kind))
        return pd.DataFrame(
            {
                "component": pd.Series(part.column("component").to_numpy(), dtype="int64"),
                "ids": pd.Series(part.column("ids").to_pylist(), dtype=object),
                "canonical_ids": pd.Series(part.column("canonical_ids").to_pylist(), dtype=object),
            }
        )

    return IdentityGraph(
        ids=column("id"),
        roots=column("canonical"),
        conflicts=reported("conflict"),
        cycles=reported("cycle"),
        attached_mask=np.asarray(column("attached").to_numpy(zero_copy_only=False), dtype=bool),
        labels=np.asarray(column("component").to_numpy(), dtype=np.int64),
    )
