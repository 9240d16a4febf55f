"""An incremental run with no new rows over a large warehouse already in sync.

Builds a demo warehouse (DuckDB, `--users` people), runs a full sync into a sandbox
child process so cursors, delivery bookkeeping and fingerprints are in place, then times
the next incremental run (job time: `run_sync` from prepare to report, in this process;
interpreter and Prefect start-up are not part of it) and prints what it did.

    python benchmarks/incremental.py                  # 1,000,000 users
    python benchmarks/incremental.py --users 100000
    python benchmarks/incremental.py --workdir /tmp/inc   # keep the synced warehouse, and
                                                          # reuse it on the next call
    python benchmarks/incremental.py --new-rows 1000      # before each run, 1,000 users of
                                                          # the warehouse sign in on a new
                                                          # device (identify + track each)
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import duckdb
from connect_sync.connect.sandbox.server import start_sandbox_process
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3, help="incremental runs to time")
    parser.add_argument(
        "--workdir",
        type=Path,
        help="keep the warehouse and its state here; a later call with the same directory "
        "skips building and the initial sync",
    )
    parser.add_argument(
        "--new-rows",
        type=int,
        default=0,
        help="before each run, load this many identify rows (an existing user on a new "
        "anonymous id: a new link) and as many track rows",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    with tempfile.TemporaryDirectory() as scratch:
        tmp = args.workdir or Path(scratch)
        tmp.mkdir(parents=True, exist_ok=True)
        path = Path(tmp) / "warehouse.duckdb"
        synced = Path(tmp) / "synced"
        if not synced.exists():
            path.unlink(missing_ok=True)
            started = time.perf_counter()
            counts = build_demo_warehouse(path, args.users)
            print(f"warehouse: {counts} built in {time.perf_counter() - started:.1f} s")
        with start_sandbox_process("bench-key") as sandbox:
            settings = Settings(
                warehouse_url=f"duckdb:///{path}",
                api_url=sandbox.api_url,
                api_key="bench-key",
                journal_dir=Path(tmp) / "journal",
            )
            if not synced.exists():
                started = time.perf_counter()
                first = run_sync(settings, SyncOptions())
                print(
                    f"initial full sync: {time.perf_counter() - started:.1f} s, "
                    f"{first.users_sent:,} users, {first.events_sent:,} events, "
                    f"{first.merges_sent:,} merges sent ({first.status})"
                )
                synced.touch()
            else:
                print(f"reusing the warehouse and state synced in {tmp}")
            requests_before = sandbox.stats()["requests"]
            for attempt in range(1, args.runs + 1):
                if args.new_rows:
                    load_new_rows(path, args.new_rows, seed=attempt)
                started = time.perf_counter()
                report = run_sync(settings, SyncOptions())
                seconds = time.perf_counter() - started
                new = f"{args.new_rows:,} new rows per table" if args.new_rows else "no new rows"
                print(
                    f"incremental run {attempt}, {new}: {seconds:.2f} s job time "
                    f"({report.status}); identity graph {report.identity_graph} "
                    f"({report.identity_links_read:,} links read); "
                    f"users considered {report.users_considered:,}, "
                    f"unchanged {report.users_unchanged:,}, sent {report.users_sent:,}; "
                    f"events read {report.events_read:,}, sent {report.events_sent:,}"
                )
            sent = sandbox.stats()["requests"] - requests_before
            print(f"requests sent by the incremental runs: {sent}")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process: {peak:,.0f} MB")


def load_new_rows(path: Path, count: int, seed: int) -> None:
    """Existing users sign in on a new device: per user one identify (new anonymous id,
    its user id) and one track under both ids, loaded a minute after the newest row."""
    con = duckdb.connect(str(path))
    try:
        for table in ("identifies", "tracks"):
            con.execute(
                f"""
                INSERT INTO segment.{table} BY NAME
                SELECT * REPLACE (
                    'bench-{seed}-' || id AS id,
                    'anon-bench-{seed}-' || user_id AS anonymous_id,
                    (SELECT max(uuid_ts) FROM segment.{table}) + INTERVAL 1 MINUTE AS uuid_ts
                )
                FROM (SELECT * FROM segment.{table} WHERE user_id IS NOT NULL)
                USING SAMPLE {int(count)} ROWS (reservoir, {int(seed)})
                """
            )
    finally:
        con.close()


if __name__ == "__main__":
    main()
