"""Duplicates a flaky network makes: how many items the sandbox stored more than once.

Connect has no idempotency key: when it processed a request whose answer the job never saw,
a retry stores the items again. Two scenarios against a sandbox child process:

1. `slow`: every request is stored at once but answered `--slow-ms` (default 1500) later,
   beyond the client's `--timeout-s` (default 1.0);
2. `cut`: `--drop-rate` (default 0.1) of the requests are stored, then the connection is
   closed without an answer (unavoidable duplicates: the client cannot tell these from
   requests dropped before processing, which it must resend);
3. `kill`: `connect-sync sync` (a child process, `CONNECT_SYNC_CONCURRENCY` 8) of a demo
   warehouse (`--kill-users`, default 5000) into a sandbox answering after 60 ms is sent
   SIGKILL once the sandbox has stored a quarter, a half, three quarters of the tracks
   (one round each, fresh warehouse and state), then run again to the end.

Prints, per scenario: items sent, acknowledged, failed, stored, duplicates, requests, seconds
(for `kill`: per round, the items stored at the kill, events stored, duplicates, the bound
of what can be in flight). Asserts nothing.

    python benchmarks/duplicates.py [--items 2000] [--concurrency 4] [--max-retries 3]
        [--kill-users 5000] [--scenarios slow,cut,kill]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process
from connect_sync.warehouse.demo import build_demo_warehouse

API_KEY = "dup-key"
KILL_CONCURRENCY, BATCH = 8, 100


def items(n: int) -> Iterator[tuple[str, dict]]:
    for i in range(n):
        yield f"m-{i}", {"user_id": f"u-{i % 97}", "event": "Dup Check", "timestamp": i}


def scenario(sandbox: SandboxProcess, name: str, args: argparse.Namespace, **faults: float) -> None:
    sandbox.reset()
    sandbox.set_faults(**faults, seed=11)
    config = ClientConfig(
        sandbox.api_url,
        API_KEY,
        concurrency=args.concurrency,
        max_retries=args.max_retries,
        timeout_s=args.timeout_s,
        backoff_base_s=0.05,
        backoff_max_s=0.5,
    )
    started = time.perf_counter()
    stats = asyncio.run(ConnectClient(config).deliver("track", items(args.items)))
    wall = time.perf_counter() - started
    time.sleep(0.5)
    remote = sandbox.stats()
    print(
        f"{name:5}  items {args.items}  acked {stats.sent}  failed {len(stats.failed)}"
        f"  unsent {stats.unsent}  stored {remote['events']}"
        f"  duplicates {remote['duplicate_events']}  requests {stats.requests}"
        f"  {wall:.1f} s"
    )


def sync_process(warehouse: Path, sandbox: SandboxProcess, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    env.update(
        CONNECT_SYNC_WAREHOUSE_URL=f"duckdb:///{warehouse}",
        CONNECT_API_URL=sandbox.api_url,
        CONNECT_API_KEY=API_KEY,
        CONNECT_SYNC_CONCURRENCY=str(KILL_CONCURRENCY),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "connect_sync", "sync"],
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def kill_rounds(sandbox: SandboxProcess, users: int) -> None:
    """SIGKILL a sync at a quarter, a half and three quarters of its tracks, then rerun."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clean = folder / "clean.duckdb"
        build_demo_warehouse(clean, users=users, seed=13)
        sandbox.reset()
        subprocess.run(["cp", str(clean), str(folder / "pristine.duckdb")], check=True)
        sync_process(clean, sandbox, folder).wait()
        expected = sandbox.stats()
        for fraction in (0.25, 0.5, 0.75):
            warehouse = folder / f"kill-{fraction}.duckdb"
            subprocess.run(["cp", str(folder / "pristine.duckdb"), str(warehouse)], check=True)
            sandbox.reset()
            sandbox.set_faults(latency_ms=60)
            started = time.perf_counter()
            first = sync_process(warehouse, sandbox, folder)
            while sandbox.stats()["track_items"] < expected["track_items"] * fraction:
                if first.poll() is not None:
                    break
                time.sleep(0.005)
            first.send_signal(signal.SIGKILL)
            first.wait()
            at_kill = sandbox.stats()["track_items"]
            sync_process(warehouse, sandbox, folder).wait()
            wall = time.perf_counter() - started
            time.sleep(0.5)
            remote = sandbox.stats()
            print(
                f"kill   at {fraction:.2f}  tracks stored at kill {at_kill}"
                f"  events {remote['events']} (clean run {expected['events']})"
                f"  duplicates {remote['duplicate_events']}"
                f"  in-flight bound {KILL_CONCURRENCY * BATCH}  {wall:.1f} s"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=1.0)
    parser.add_argument("--slow-ms", type=float, default=1500)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    parser.add_argument("--kill-users", type=int, default=5000)
    parser.add_argument("--scenarios", default="slow,cut,kill")
    args = parser.parse_args()
    chosen = set(args.scenarios.split(","))
    with start_sandbox_process(API_KEY) as sandbox:
        if "slow" in chosen:
            scenario(sandbox, "slow", args, slow_answer_ms=args.slow_ms)
        if "cut" in chosen:
            scenario(sandbox, "cut", args, drop_after_rate=args.drop_rate)
        if "kill" in chosen:
            kill_rounds(sandbox, args.kill_users)


if __name__ == "__main__":
    main()
