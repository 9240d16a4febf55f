"""Identity resolution on hand-built links (transforms.identity)."""

from __future__ import annotations

import itertools
import random

import numpy as np
import pandas as pd
import pytest
from connect_sync.transforms.identity import (
    IdentityGraph,
    empty_links,
    merge_links,
    resolve_identities,
    update_identities,
)

T0 = pd.Timestamp("2026-11-01", tz="UTC")


def links(*rows: tuple[str | None, str | None, str, float]) -> pd.DataFrame:
    """(from_id, to_id, kind, minutes after T0) rows as a links frame."""
    return pd.DataFrame(
        [(f, t, k, T0 + pd.Timedelta(minutes=m)) for f, t, k, m in rows],
        columns=["from_id", "to_id", "kind", "ts"],
    )


def canonical_of(frame: pd.DataFrame) -> dict[str, str]:
    return resolve_identities(frame).canonical.to_dict()


def test_no_links_resolve_every_id_to_itself() -> None:
    graph = resolve_identities(empty_links())
    assert graph.canonical.empty and graph.conflicts.empty and graph.cycles.empty
    ids = pd.Series(["a", None, "b"], dtype="string")
    assert graph.resolve(ids).tolist() == ["a", pd.NA, "b"]


def test_self_links_and_null_ends_are_ignored() -> None:
    graph = resolve_identities(
        links(("u", "u", "identify", 0), (None, "u", "track", 1), ("a", None, "alias", 2))
    )
    assert graph.canonical.empty


def test_anonymous_ids_resolve_to_their_user() -> None:
    graph = resolve_identities(links(("anon-1", "u1", "identify", 0), ("anon-2", "u1", "track", 5)))
    assert graph.canonical.to_dict() == {"anon-1": "u1", "anon-2": "u1", "u1": "u1"}
    assert sorted(graph.attached) == ["anon-1", "anon-2"]
    assert graph.conflicts.empty and graph.cycles.empty
    assert sorted(graph.members(["u1"])) == ["anon-1", "anon-2", "u1"]
    resolved = graph.resolve(pd.Series(["anon-2", "stranger", None], dtype="string"))
    assert resolved.tolist() == ["u1", "stranger", pd.NA]


def test_alias_chain_resolves_to_its_most_recent_target() -> None:
    frame = links(("A", "B", "alias", 1), ("B", "C", "alias", 2), ("anon", "A", "identify", 0))
    graph = resolve_identities(frame)
    assert graph.canonical.to_dict() == {"A": "C", "B": "C", "C": "C", "anon": "C"}
    # Aliased ids are merged by their own alias call, so only `anon` is attached.
    assert list(graph.attached) == ["anon"]
    assert graph.conflicts.empty and graph.cycles.empty


def test_alias_chain_is_followed_whatever_the_clock_says() -> None:
    # B -> C was stamped earlier than A -> B (client clocks): C is still the end.
    assert canonical_of(links(("A", "B", "alias", 9), ("B", "C", "alias", 1)))["A"] == "C"


def test_long_chain_in_any_row_order() -> None:
    ids = [f"id{i:03d}" for i in range(300)]
    rows = [(a, b, "alias", i) for i, (a, b) in enumerate(itertools.pairwise(ids))]
    random.Random(5).shuffle(rows)
    canonical = canonical_of(links(*rows))
    assert set(canonical.values()) == {ids[-1]}


@pytest.mark.parametrize("size", [2, 3])
def test_alias_cycle_is_reported_and_resolved_to_the_latest_target(size: int) -> None:
    ids = ["A", "B", "C"][:size]
    rows = [(ids[i], ids[(i + 1) % size], "alias", i) for i in range(size)]
    graph = resolve_identities(links(*rows, ("anon", "B", "track", 9)))
    latest_target = rows[-1][1]
    assert set(graph.canonical.to_numpy()) == {latest_target}
    assert len(graph.cycles) == 1
    assert graph.cycles["ids"][0] == sorted(ids)
    assert graph.cycles["canonical_ids"][0] == [latest_target]
    assert graph.conflicts.empty
    assert "alias cycle" in graph.examples()[0]


def test_cycle_with_a_later_way_out_ends_outside_the_cycle() -> None:
    graph = resolve_identities(
        links(("A", "B", "alias", 1), ("B", "A", "alias", 2), ("A", "C", "alias", 3))
    )
    assert set(graph.canonical.to_numpy()) == {"C"}
    assert len(graph.cycles) == 1


def test_two_user_ids_sharing_an_anonymous_id_are_kept_apart() -> None:
    # One shared device: A signed in, later B. Neither user id is merged into the other;
    # the device's anonymous id goes to the most recent one.
    graph = resolve_identities(
        links(("device", "A", "identify", 1), ("device", "B", "track", 2), ("a2", "A", "track", 0))
    )
    assert graph.canonical.to_dict() == {"A": "A", "B": "B", "device": "B", "a2": "A"}
    assert len(graph.conflicts) == 1
    assert graph.conflicts["canonical_ids"][0] == ["A", "B"]
    assert graph.conflicts["ids"][0] == ["A", "B", "a2", "device"]
    assert graph.examples()[0].startswith("conflict: user ids A, B")


def test_alias_of_an_anonymous_id_wins_over_a_later_link() -> None:
    graph = resolve_identities(links(("anon", "A", "alias", 1), ("anon", "B", "track", 5)))
    assert graph.canonical["anon"] == "A"
    assert len(graph.conflicts) == 1


def test_previous_id_aliased_to_two_users_goes_to_the_latest() -> None:
    graph = resolve_identities(links(("old", "A", "alias", 1), ("old", "B", "alias", 2)))
    assert graph.canonical.to_dict() == {"old": "B", "A": "A", "B": "B"}
    assert graph.conflicts["canonical_ids"][0] == ["A", "B"]


def test_renamed_user_is_not_a_conflict() -> None:
    # anon seen with A, A renamed to B by alias, anon later seen with B: one person.
    graph = resolve_identities(
        links(("anon", "A", "identify", 1), ("A", "B", "alias", 2), ("anon", "B", "track", 3))
    )
    assert set(graph.canonical.to_numpy()) == {"B"}
    assert graph.conflicts.empty and graph.cycles.empty


def test_result_does_not_depend_on_row_order() -> None:
    frame = links(
        ("d", "A", "identify", 1),
        ("d", "B", "identify", 1),  # a tie: decided by id, not by row order
        ("A", "C", "alias", 2),
        ("C", "A", "alias", 2),
        ("x", "y", "track", 3),
    )
    first = resolve_identities(frame).canonical.sort_index()
    for seed in range(5):
        shuffled = frame.sample(frac=1, random_state=seed)
        assert resolve_identities(shuffled).canonical.sort_index().equals(first)


def test_arrow_typed_links_from_the_warehouse() -> None:
    frame = links(("anon", "u", "identify", 0), ("u", "v", "alias", 1))
    frame = frame.astype(
        {
            "from_id": "string[pyarrow]",
            "to_id": "string[pyarrow]",
            "kind": "string[pyarrow]",
            "ts": "timestamp[us, tz=UTC][pyarrow]",
        }
    )
    frame.loc[1, "ts"] = None
    assert canonical_of(frame) == {"anon": "v", "u": "v", "v": "v"}


def _reference(frame: pd.DataFrame) -> dict[str, str]:
    """The same rules, one id at a time: a slow, obvious implementation to compare with."""
    rows = [
        (str(f), str(t), k, ts)
        for f, t, k, ts in frame.itertuples(index=False, name=None)
        if f is not None and t is not None and f != t
    ]
    users = {t for _, t, _, _ in rows}
    aliased = {f for f, _, k, _ in rows if k == "alias"}
    parent: dict[str, str] = {}
    for node in {f for f, *_ in rows} | users:
        mine = [r for r in rows if r[0] == node]
        if node in aliased:
            mine = [r for r in mine if r[2] == "alias"]
        elif node in users:
            continue
        best = max(mine, key=lambda r: (r[2] == "alias", r[3], r[1]))
        parent[node] = best[1]
    latest_in: dict[str, tuple] = {}
    for _f, t, k, ts in rows:
        if k == "alias":
            latest_in[t] = max(latest_in.get(t, (pd.Timestamp.min.tz_localize("UTC"), "")), (ts, t))

    def root(node: str) -> str:
        seen: list[str] = []
        while node in parent and node not in seen:
            seen.append(node)
            node = parent[node]
        if node in parent:  # a cycle: its latest alias target (among alias rows inside)
            cycle = seen[seen.index(node) :]
            inner = [(ts, t) for f, t, k, ts in rows if k == "alias" and f in cycle and t in cycle]
            return max(inner)[1]
        return node

    # Resolve cycles first so every id of one cycle agrees.
    result = {}
    for node in {f for f, *_ in rows} | users:
        result[node] = root(node)
    # A cycle's root is itself a root now: ids whose chain passes through it stop there.
    roots = {r for r in result.values() if r in parent}
    for node in result:
        path = node
        while path not in roots and path in parent:
            path = parent[path]
            if path == node:
                break
        result[node] = path if path in roots else result[node]
    return result


@pytest.mark.parametrize("seed", range(40))
def test_vectorized_resolution_matches_the_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"i{n}" for n in range(12)]
    rows = [
        (
            ids[rng.integers(len(ids))],
            ids[rng.integers(len(ids))],
            ["alias", "identify", "track"][rng.integers(3)],
            int(rng.integers(0, 4)),
        )
        for _ in range(int(rng.integers(1, 14)))
    ]
    frame = links(*rows)
    # The warehouse query returns one row per (from, to, kind) with its latest time.
    frame = frame.groupby(["from_id", "to_id", "kind"], as_index=False)["ts"].max()
    graph = resolve_identities(frame)
    got = graph.canonical.to_dict()
    assert got == _reference(frame)
    # Every canonical id is its own canonical id, and groups with one root are no conflict.
    assert all(got[c] == c for c in got.values())


def _random_links(rng: np.random.Generator, ids: list[str], most: int) -> pd.DataFrame:
    rows = [
        (
            ids[rng.integers(len(ids))],
            ids[rng.integers(len(ids))],
            ["alias", "identify", "track"][rng.integers(3)],
            int(rng.integers(0, 6)),
        )
        for _ in range(int(rng.integers(0, most)))
    ]
    frame = links(*rows) if rows else empty_links()
    return frame.groupby(["from_id", "to_id", "kind"], as_index=False)["ts"].max()


def _outcome(graph: IdentityGraph) -> tuple:
    """What a graph decides, whatever its groups are numbered."""

    def groups(frame: pd.DataFrame) -> set:
        return {
            (tuple(i), tuple(c)) for i, c in zip(frame["ids"], frame["canonical_ids"], strict=True)
        }

    by_component: dict[int, set[str]] = {}
    for node, label in zip(graph.ids.to_pylist(), graph.labels.tolist(), strict=True):
        by_component.setdefault(label, set()).add(node)
    return (
        graph.canonical.to_dict(),
        set(graph.attached),
        groups(graph.conflicts),
        groups(graph.cycles),
        sorted(sorted(members) for members in by_component.values()),
    )


@pytest.mark.parametrize("seed", range(60))
def test_updating_with_new_links_equals_resolving_them_all(seed: int) -> None:
    rng = np.random.default_rng(seed)
    ids = [f"i{n}" for n in range(14)]
    old, new = _random_links(rng, ids, 12), _random_links(rng, ids, 6)
    everything = pd.concat([old, new]).groupby(["from_id", "to_id", "kind"], as_index=False)
    updated = update_identities(resolve_identities(old), old, new)
    assert _outcome(updated) == _outcome(resolve_identities(everything["ts"].max()))


def test_updating_with_no_new_links_keeps_the_graph() -> None:
    old = links(("anon", "u1", "identify", 1), ("a", "b", "alias", 2), ("b", "a", "alias", 3))
    graph = resolve_identities(old)
    assert update_identities(graph, old, empty_links()) is graph


def test_resolve_hashes_either_side_alike() -> None:
    rows = [(f"anon-{n}", f"u{n % 7}", "identify", n) for n in range(60)]
    rows += [("u1", "u2", "alias", 100)]
    graph = resolve_identities(links(*rows))
    few = pd.Series(["anon-8", "stranger", None, "u1"], dtype="string")  # hashed: these 4
    linked = [f"anon-{n}" for n in range(60)] + [f"u{k}" for k in range(7)]
    many = pd.Series([*linked, "stranger", None], dtype="string")  # more ids: the graph hashed
    assert graph.resolve(few).tolist() == ["u2", "stranger", pd.NA, "u2"]

    def by_the_rules(i: str) -> str:  # anon-n identified as u(n % 7); u1 aliased to u2
        user = f"u{int(i.removeprefix('anon-')) % 7}" if i.startswith("anon-") else i
        return "u2" if user == "u1" else user

    expected = [*(by_the_rules(i) for i in linked), "stranger", pd.NA]
    assert graph.resolve(many).tolist() == expected


def test_merged_links_keep_one_row_per_pair_with_the_latest_times() -> None:
    def with_loaded(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.assign(loaded=frame["ts"] + pd.Timedelta(minutes=1))

    old = with_loaded(links(("a", "u1", "identify", 1), ("b", "u1", "track", 2)))
    new = with_loaded(links(("a", "u1", "identify", 5), ("c", "u2", "identify", 6)))
    merged = merge_links(old, new).sort_values(["from_id", "kind"]).reset_index(drop=True)
    assert merged["from_id"].tolist() == ["a", "b", "c"]
    assert merged["ts"].tolist() == [T0 + pd.Timedelta(minutes=m) for m in (5, 2, 6)]
    assert merged["loaded"].tolist() == [T0 + pd.Timedelta(minutes=m) for m in (6, 3, 7)]
