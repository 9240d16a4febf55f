"""Peak memory of a partitioned run (issue #16): `connect-sync sync` of the demo warehouse
(DuckDB, `--users`, default 1,000,000) into a sandbox child process, with PostgreSQL state,
once in one process and once with `--partitions P` on a temporary local Dask cluster.

Each run is `/usr/bin/time -v connect-sync sync [...]` with a fresh state schema and an
emptied sandbox; GNU time's "Maximum resident set size" is the largest single process of
the run (the CLI, or a Dask worker: each waited-for descendant counts on its own). Prints
wall time, that peak, and what the sandbox stored (users, events, duplicates).
Asserts nothing.

    python benchmarks/partitions_memory.py [--users 1000000] [--partitions 3]
        [--postgres postgresql+psycopg://postgres@127.0.0.1:5432/test] [--dir DIR]
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
from connect_sync.connect.sandbox.server import start_sandbox_process
from connect_sync.warehouse.demo import build_demo_warehouse

KEY = "partitions-memory-key"


def timed_sync(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, int, int]:
    """Wall seconds, peak RSS (MB) of the largest process, exit code."""
    cli = str(Path(sys.executable).with_name("connect-sync"))
    started = time.perf_counter()
    done = subprocess.run(
        ["/usr/bin/time", "-v", cli, "sync", *args],
        env={**os.environ, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - started
    peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", done.stderr)
    if done.returncode:
        print(done.stdout[-2000:], done.stderr[-2000:], sep="\n", file=sys.stderr)
    return wall, int(peak.group(1)) // 1024 if peak else -1, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, default=3)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/test")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        warehouse = folder / "demo.duckdb"
        build_demo_warehouse(warehouse, args.users, 7)
        engine = sa.create_engine(args.postgres)
        with start_sandbox_process(KEY, extra_args=["--db", str(folder / "sandbox.sqlite")]) as box:
            for label, extra in (
                ("one process", []),
                (f"--partitions {args.partitions}", ["--partitions", str(args.partitions)]),
            ):
                state = f"partitions_memory_{args.partitions if extra else 1}"
                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{state}" CASCADE'))
                box.reset()
                env = {
                    "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{warehouse}",
                    "CONNECT_SYNC_STATE_URL": args.postgres,
                    "CONNECT_SYNC_STATE_SCHEMA": state,
                    "CONNECT_SYNC_JOURNAL_DIR": str(folder / f"journal-{state}"),
                    "CONNECT_API_URL": box.api_url,
                    "CONNECT_API_KEY": KEY,
                    "PREFECT_HOME": str(folder / "prefect"),
                }
                wall, peak, code = timed_sync(extra, env, folder)
                stats = box.stats()
                print(
                    f"{label:16} exit {code}  {wall:7.1f} s  largest process peak {peak:,} MB"
                    f"  | sandbox: {stats['users']:,} users, {stats['events']:,} events,"
                    f" {stats['duplicate_events']:,} duplicates",
                    flush=True,
                )
                with engine.begin() as conn:
                    conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{state}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
