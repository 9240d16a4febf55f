"""End-to-end benchmark: a 1,000,000-user demo warehouse, `connect-sync sync --dry-run`
over it, and `connect-sync demo --users 1000000` (build, sandbox, sync over HTTP).

Each step runs as its own child process; wall time and the child's peak RSS come from
`os.wait4`. Everything is written to a temporary folder, removed afterwards.

    python benchmarks/e2e.py                      # 1M users: build, dry run, demo
    python benchmarks/e2e.py --users 100000 --skip-demo
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from child import run_child

ROOT = Path(__file__).resolve().parent.parent

BUILD = (
    "import sys; from pathlib import Path; "
    "from connect_sync.warehouse.demo import build_demo_warehouse; "
    "print(build_demo_warehouse(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))"
)


def report(name: str, result: dict) -> None:
    print(
        f"{name:34} exit {result['exit']:>3}  {result['seconds']:>7.1f} s  "
        f"peak RSS {result['peak_rss_mb']:>6.0f} MB",
        flush=True,
    )
    for line in result["tail"]:
        print(f"    | {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-demo", action="store_true", help="Skip `connect-sync demo`.")
    parser.add_argument("--timeout", type=float, default=580, help="Seconds per step.")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "connect_sync"]
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        warehouse = work / "warehouse.duckdb"
        env = {
            "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{warehouse}",
            "CONNECT_SYNC_SOURCE_SCHEMA": "segment",
            "CONNECT_SYNC_STATE_URL": f"duckdb:///{work / 'state.duckdb'}",
            "PYTHONPATH": str(ROOT),
        }
        build = run_child(
            [sys.executable, "-c", BUILD, str(warehouse), str(args.users), str(args.seed)],
            work,
            env,
            args.timeout,
        )
        report(f"build demo warehouse ({args.users:,} users)", build)
        dry = run_child(
            [*cli, "sync", "--dry-run", "--output", str(work / "dry-run.jsonl")],
            work,
            env,
            args.timeout,
        )
        report("connect-sync sync --dry-run", dry)
        if not args.skip_demo:
            demo_dir = work / "demo"
            demo_dir.mkdir()
            demo = run_child(
                [*cli, "demo", "--users", str(args.users), "--seed", str(args.seed)],
                demo_dir,
                {"PYTHONPATH": str(ROOT)},
                args.timeout,
            )
            report(f"connect-sync demo --users {args.users}", demo)


if __name__ == "__main__":
    main()
