"""End-to-end benchmark: a 1,000,000-user demo warehouse, `connect-sync sync --dry-run`
over it, and `connect-sync demo --users 1000000` (build, sandbox, sync over HTTP).

Each step runs as its own child process; wall time and the child's peak RSS come from
`os.wait4`. Everything is written to a temporary folder, removed afterwards.

    python benchmarks/e2e.py                      # 1M users: build, dry run, demo
    python benchmarks/e2e.py --users 100000 --skip-demo
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

BUILD = (
    "import sys; from pathlib import Path; "
    "from connect_sync.warehouse.demo import build_demo_warehouse; "
    "print(build_demo_warehouse(Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])))"
)


def run(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict:
    """Run a child to completion: its wall time, peak RSS and the tail of its output."""
    started = time.perf_counter()
    with open(cwd / "child.log", "w") as log:
        child = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.05)
        child.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - started
    tail = (cwd / "child.log").read_text(errors="replace").strip().splitlines()[-12:]
    return {
        "seconds": seconds,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit": child.returncode,
        "tail": tail,
    }


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
        build = run(
            [sys.executable, "-c", BUILD, str(warehouse), str(args.users), str(args.seed)],
            work,
            env,
            args.timeout,
        )
        report(f"build demo warehouse ({args.users:,} users)", build)
        dry = run(
            [*cli, "sync", "--dry-run", "--output", str(work / "dry-run.jsonl")],
            work,
            env,
            args.timeout,
        )
        report("connect-sync sync --dry-run", dry)
        if not args.skip_demo:
            demo_dir = work / "demo"
            demo_dir.mkdir()
            demo = run(
                [*cli, "demo", "--users", str(args.users), "--seed", str(args.seed)],
                demo_dir,
                {"PYTHONPATH": str(ROOT)},
                args.timeout,
            )
            report(f"connect-sync demo --users {args.users}", demo)


if __name__ == "__main__":
    main()
