"""Memory at scale (issue #16): a dry run of every stream over Segment-shaped DuckDB
warehouses of growing size, each in a fresh process, with its wall time and peak RSS.

A warehouse of N users is the demo warehouse (`warehouse.demo`, about 2 identify rows and
3 events per user) built in shards of at most 1M users, each shard's ids prefixed so that
shards never share a person (shard 0 is the 1M demo warehouse itself). The `wide` variant
adds 100 trait columns (`trait_0` .. `trait_99`: a third null, the rest one of 1,000
strings) to `identifies`. The warehouse is built in a child process, so its memory is not
the run's; each dry run is `python -m connect_sync sync --dry-run` under `/usr/bin/time -v`
with a fresh DuckDB state file.

    python benchmarks/memory.py [--users 1000000 3000000 10000000] [--variants narrow wide]
           [--dir /tmp/connect-sync-memory] [--keep]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

SHARD = 1_000_000
WIDE_TRAITS = 100
ID_COLUMNS = ("id", "user_id", "anonymous_id", "previous_id")

_BUILD = r"""
import sys
from pathlib import Path
import duckdb
from connect_sync.warehouse.demo import build_demo_warehouse

path, users, shard, wide, traits = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), \
    sys.argv[4] == "wide", int(sys.argv[5])
id_columns = ("id", "user_id", "anonymous_id", "previous_id")
con = duckdb.connect(str(path))
con.execute("CREATE SCHEMA IF NOT EXISTS segment")
for k, start in enumerate(range(0, users, shard)):
    part = path.with_name(f"{path.stem}-shard{k}.duckdb")
    build_demo_warehouse(part, min(shard, users - start), seed=7 + k)
    con.execute(f"ATTACH '{part}' AS shard (READ_ONLY)")
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM duckdb_tables() WHERE database_name = 'shard' "
        "AND schema_name = 'segment'").fetchall()]
    for table in tables:
        columns = [r[0] for r in con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE database_name = 'shard' "
            "AND schema_name = 'segment' AND table_name = ? ORDER BY column_index",
            [table]).fetchall()]
        prefix = f"s{k}-"
        select = ", ".join(
            f"CASE WHEN \"{c}\" IS NULL THEN NULL ELSE '{prefix}' || \"{c}\" END AS \"{c}\""
            if k and c in id_columns else f'"{c}"' for c in columns)
        source = f'shard.segment."{table}"'
        if k == 0:
            con.execute(f'CREATE TABLE segment."{table}" AS SELECT {select} FROM {source}')
        else:
            con.execute(f'INSERT INTO segment."{table}" SELECT {select} FROM {source}')
    con.execute("DETACH shard")
    part.unlink()
if wide:
    adds = ", ".join(
        f"CASE WHEN hash(id, {t}) % 3 = 0 THEN NULL "
        f"ELSE 'value-' || (hash(id, {t}) % 1000)::VARCHAR END AS trait_{t}"
        for t in range(traits))
    con.execute(f"CREATE TABLE segment.identifies_wide AS SELECT *, {adds} FROM segment.identifies")
    con.execute("DROP TABLE segment.identifies")
    con.execute("ALTER TABLE segment.identifies_wide RENAME TO identifies")
con.execute("CHECKPOINT")
con.close()
"""


def build(path: Path, users: int, variant: str) -> float:
    """The warehouse of `users` people at `path` (built once, kept); seconds it took."""
    if path.exists():
        return 0.0
    started = time.monotonic()
    subprocess.run(
        [sys.executable, "-c", _BUILD, str(path), str(users), str(SHARD), variant,
         str(WIDE_TRAITS)],
        check=True,
    )  # fmt: skip
    return time.monotonic() - started


def dry_run(warehouse: Path, folder: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, lines written) of a dry run of every stream."""
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    env = dict(
        os.environ,
        CONNECT_SYNC_WAREHOUSE_URL=f"duckdb:///{warehouse}",
        CONNECT_SYNC_SOURCE_SCHEMA="segment",
        CONNECT_SYNC_STATE_URL=f"duckdb:///{folder / 'state.duckdb'}",
        CONNECT_SYNC_JOURNAL_DIR=str(folder / "journal"),
    )
    out = folder / "out.jsonl"
    command = ["/usr/bin/time", "-v", sys.executable, "-m", "connect_sync", "sync", "--dry-run",
               "--output", str(out)]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, cwd=folder)
    if done.returncode != 0:
        raise SystemExit(f"dry run failed:\n{done.stderr[-3000:]}")
    wall = re.search(r"Elapsed \(wall clock\) time.*: (?:(\d+):)?(\d+):([\d.]+)", done.stderr)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    assert wall and rss, done.stderr[-2000:]
    hours, minutes, seconds = wall.groups()
    elapsed = int(hours or 0) * 3600 + int(minutes) * 60 + float(seconds)
    with out.open("rb") as lines:
        count = sum(1 for _ in lines)
    return elapsed, int(rss.group(1)) / 1024, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, nargs="+", default=[1_000_000, 3_000_000, 10_000_000])
    parser.add_argument("--variants", nargs="+", default=["narrow", "wide"],
                        choices=["narrow", "wide"])  # fmt: skip
    parser.add_argument("--dir", type=Path, default=Path("/tmp/connect-sync-memory"))
    parser.add_argument("--keep", action="store_true", help="keep the warehouses")
    args = parser.parse_args()
    args.dir.mkdir(parents=True, exist_ok=True)
    print("| variant | users | identify rows/user | build s | dry run s | peak RSS | lines |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for variant in args.variants:
        for users in args.users:
            warehouse = args.dir / f"{variant}-{users}.duckdb"
            built = build(warehouse, users, variant)
            elapsed, rss, lines = dry_run(warehouse, args.dir / f"run-{variant}-{users}")
            print(f"| {variant} | {users:,} | ~2 | {built:.0f} | {elapsed:.1f} | {rss:,.0f} MB "
                  f"| {lines:,} |", flush=True)  # fmt: skip
            if not args.keep:
                warehouse.unlink()


if __name__ == "__main__":
    main()
