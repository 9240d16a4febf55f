"""Identity resolution speed: resolve_identities over a synthetic link graph shaped like a
Segment source (users with one to three anonymous devices, alias rows for some sign-ups,
renames that form alias chains, a few shared devices and alias cycles). Prints figures;
asserts nothing.

    python benchmarks/identity.py [--links 1000000 5000000] [--seed 7]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import pandas as pd
import pyarrow.compute as pc
from connect_sync.transforms.identity import resolve_identities

T0 = np.datetime64("2026-01-01T00:00:00", "us")


def synthetic_links(n_links: int, seed: int) -> pd.DataFrame:
    """About n_links distinct (from, to, kind) links, as the identity_links query returns."""
    rng = np.random.default_rng(seed)
    n_users = max(int(n_links / 4.45), 1)  # about 4.45 links per user below
    users = np.char.add("user-", np.arange(n_users).astype(str)).astype(object)
    parts = []

    # Each user: 1-3 anonymous devices, each seen in identifies and tracks.
    devices = rng.integers(1, 4, n_users)
    owner = np.repeat(np.arange(n_users), devices)
    anon = np.char.add("anon-", np.arange(len(owner)).astype(str)).astype(object)
    for kind in ("identify", "track"):
        parts.append((anon, users[owner], kind))
    # Sign-ups aliased from their first device (40 %).
    first = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    aliased = first[rng.random(len(first)) < 0.4]
    parts.append((anon[aliased], users[owner[aliased]], "alias"))
    # Renames: 2 % of users aliased to a newer user id, some renamed again (chains).
    renamed = rng.choice(n_users, n_users // 50, replace=False)
    new_ids = np.char.add("renamed-", renamed.astype(str)).astype(object)
    parts.append((users[renamed], new_ids, "alias"))
    parts.append(
        (new_ids[::3], np.char.add(new_ids[::3].astype(str), "-b").astype(object), "alias")
    )
    # Shared devices (0.1 %) and alias cycles (0.01 %).
    shared = rng.choice(len(anon), max(len(anon) // 1000, 1), replace=False)
    parts.append((anon[shared], users[rng.integers(0, n_users, len(shared))], "track"))
    cyc = rng.choice(n_users, max(n_users // 10_000, 1), replace=False)
    parts.append((users[(cyc + 1) % n_users], users[cyc], "alias"))
    parts.append((users[cyc], users[(cyc + 1) % n_users], "alias"))

    from_ids = np.concatenate([p[0] for p in parts])
    to_ids = np.concatenate([p[1] for p in parts])
    kinds = np.concatenate([np.full(len(p[0]), p[2], dtype=object) for p in parts])
    ts = T0 + rng.integers(0, 365 * 86_400, len(from_ids)).astype("timedelta64[s]")
    frame = pd.DataFrame(
        {
            "from_id": pd.array(from_ids, dtype="string[pyarrow]"),
            "to_id": pd.array(to_ids, dtype="string[pyarrow]"),
            "kind": pd.array(kinds, dtype="string[pyarrow]"),
            "ts": pd.Series(ts).dt.tz_localize("UTC"),
        }
    )
    return frame.sample(frac=1, random_state=seed).reset_index(drop=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--links", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    print(
        f"{'links':>10} {'ids':>10} {'groups':>9} {'conflicts':>9} {'cycles':>6} "
        f"{'seconds':>8} {'links/s':>10} {'peak RSS':>9}"
    )
    for n in args.links:
        links = synthetic_links(n, args.seed)
        start = time.perf_counter()
        graph = resolve_identities(links)
        seconds = time.perf_counter() - start
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{len(links):>10,} {len(graph):>10,} "
            f"{pc.count_distinct(graph.roots).as_py():>9,} {len(graph.conflicts):>9,} "
            f"{len(graph.cycles):>6,} {seconds:>8.2f} {len(links) / seconds:>10,.0f} "
            f"{peak_mb:>7,.0f}MB"
        )


if __name__ == "__main__":
    main()
