"""Identity resolution: links between ids form groups, each with one canonical id."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

#: Which kind of link names the canonical id first: the latest alias target wins.
_KIND_RANK = {"alias": 2, "identify": 1, "track": 0}


@dataclass(frozen=True)
class IdentityGraph:
    """`canonical` maps every linked id to its group's canonical id (unlinked ids map to
    themselves and are absent). `conflicts` and `cycles` list the groups to report."""

    canonical: pd.Series
    conflicts: pd.DataFrame
    cycles: pd.DataFrame

    def resolve(self, ids: pd.Series) -> pd.Series:
        """The canonical id of each id (itself when it has no links); nulls stay null."""
        mapped = ids.map(self.canonical)
        return mapped.where(mapped.notna(), ids)

    def members(self, canonical_ids: pd.Series | list[str]) -> pd.Series:
        """Every id, canonical ones included, of the given groups."""
        wanted = pd.Index(pd.unique(pd.Series(canonical_ids, dtype=object).dropna()))
        linked = self.canonical[self.canonical.isin(wanted)].index
        return pd.Series(wanted.union(pd.Index(linked)), dtype=object)


def empty_links() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "from_id": pd.Series(dtype=object),
            "to_id": pd.Series(dtype=object),
            "kind": pd.Series(dtype=object),
            "ts": pd.Series(dtype="datetime64[us, UTC]"),
        }
    )


def resolve_identities(links: pd.DataFrame) -> IdentityGraph:
    """Connected components of the link graph, vectorized with scipy.

    `links` has `from_id` (previous or anonymous id), `to_id` (a user id), `kind`
    (`alias`, `identify`, `track`) and `ts`. The canonical id of a group is the target of
    its latest alias, else its most recently seen user id.
    """
    links = links.dropna(subset=["from_id", "to_id"])
    links = links[links["from_id"].astype(str) != links["to_id"].astype(str)]
    if links.empty:
        empty = pd.DataFrame({"component": [], "ids": []})
        return IdentityGraph(pd.Series(dtype=object), empty, empty.copy())

    from_ids = links["from_id"].astype(str).to_numpy(dtype=object)
    to_ids = links["to_id"].astype(str).to_numpy(dtype=object)
    codes, nodes = pd.factorize(np.concatenate([from_ids, to_ids]))
    n_links = len(links)
    src, dst = codes[:n_links], codes[n_links:]
    graph = coo_matrix((np.ones(n_links, dtype=np.int8), (src, dst)), shape=(len(nodes),) * 2)
    _, component_of_node = connected_components(graph, directed=False)

    edges = pd.DataFrame(
        {
            "component": component_of_node[src],
            "src": src,
            "dst": dst,
            "rank": links["kind"].map(_KIND_RANK).fillna(0).to_numpy(),
            "ts": pd.to_datetime(links["ts"], utc=True).to_numpy(),
        }
    )
    # The canonical id: the target of the best link (alias first, then latest).
    best = edges.sort_values(["component", "rank", "ts"], kind="stable").groupby("component").last()
    canonical_code = pd.Series(best["dst"].to_numpy(), index=best.index)
    node_component = pd.Series(component_of_node)
    canonical = pd.Series(
        nodes[canonical_code.reindex(node_component.to_numpy()).to_numpy()], index=nodes
    )
    return IdentityGraph(
        canonical=canonical,
        conflicts=_conflicts(edges, nodes, canonical_code),
        cycles=_cycles(edges, nodes, node_component),
    )


def _conflicts(edges: pd.DataFrame, nodes: np.ndarray, canonical: pd.Series) -> pd.DataFrame:
    """Groups holding a user id that is neither the canonical one nor aliased away."""
    aliased_away = set(edges.loc[edges["rank"] == _KIND_RANK["alias"], "src"].tolist())
    targets = edges[["component", "dst"]].drop_duplicates()
    targets = targets[
        targets["dst"].to_numpy() != canonical.reindex(targets["component"]).to_numpy()
    ]
    targets = targets[~targets["dst"].isin(aliased_away)]
    return _group_ids(targets["component"], nodes, edges)


def _cycles(edges: pd.DataFrame, nodes: np.ndarray, node_component: pd.Series) -> pd.DataFrame:
    """Groups whose distinct links close a loop (more links than a tree has)."""
    a = np.minimum(edges["src"], edges["dst"])
    b = np.maximum(edges["src"], edges["dst"])
    pairs = pd.DataFrame({"component": edges["component"], "a": a, "b": b}).drop_duplicates()
    link_count = pairs.groupby("component").size()
    node_count = node_component.value_counts()
    cyclic = link_count[link_count >= node_count.reindex(link_count.index)].index
    alias = edges.loc[edges["rank"] == _KIND_RANK["alias"], ["component", "src", "dst"]]
    reversed_alias = alias.rename(columns={"src": "dst", "dst": "src"})
    mutual = alias.merge(reversed_alias, on=["component", "src", "dst"])["component"]
    return _group_ids(pd.concat([pd.Series(cyclic), mutual]), nodes, edges)


def _group_ids(components: pd.Series, nodes: np.ndarray, edges: pd.DataFrame) -> pd.DataFrame:
    wanted = pd.unique(components)
    if len(wanted) == 0:
        return pd.DataFrame({"component": [], "ids": []})
    sub = edges[edges["component"].isin(wanted)]
    member_codes = pd.concat(
        [
            sub[["component", "src"]].set_axis(["component", "node"], axis=1),
            sub[["component", "dst"]].set_axis(["component", "node"], axis=1),
        ]
    ).drop_duplicates()
    member_codes["id"] = nodes[member_codes["node"].to_numpy()]
    grouped = member_codes.groupby("component")["id"].agg(lambda s: sorted(s))
    return grouped.rename("ids").reset_index()
