"""Delivery engine throughput: the real client and the real bookkeeping into the sandbox.

Three runs against a sandbox child process (in memory, faults off):

1. `--events` track items (default 200,000) with no rate limit: items/s, requests/s, peak
   memory of this process, and the CPU each process used (this one from getrusage, the
   sandbox from /proc/<pid>/stat) to show which one is the bottleneck;
2. the same with the client limited to `--rate-limit` req/s (default 100) for about
   `--limited-seconds`: the achieved share of the configured limit;
3. the client unlimited, the sandbox limiting to `--rate-limit` req/s with 429s: the share
   of the server's limit the client achieves by honouring Retry-After.

Every acknowledged batch goes through the production path: `AckJournal` appends, merged
into a DuckDB `StateStore` at the end (timed separately). Items are generated lazily and
streamed through the client's bounded queue. Prints figures; asserts nothing.

    python benchmarks/delivery.py [--events 200000] [--rate-limit 100]
                                  [--limited-seconds 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from connect.client import ClientConfig, ConnectClient, DeliveryStats
from connect.sandbox.server import SandboxProcess, start_sandbox_process
from warehouse.engine import create_engine
from warehouse.journal import AckJournal
from warehouse.state import StateStore

API_KEY = "bench-key"
TICKS = os.sysconf("SC_CLK_TCK")
EVENTS = ("Order Completed", "Product Viewed", "Signed Up", "Cart Viewed")


def items(n: int, offset: int = 0) -> Iterator[tuple[str, dict]]:
    """Realistic track items, generated on demand (never a list of all of them)."""
    for i in range(offset, offset + n):
        yield (
            f"msg-{i:09d}",
            {
                "user_id": f"user-{i % 50_000}",
                "event": EVENTS[i % 4],
                "properties": {"order_id": f"o-{i}", "revenue": 19.99, "items": 2},
                "timestamp": 1_700_000_000 + i,
            },
        )


def cpu_of(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def own_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(
    sandbox: SandboxProcess,
    state_dir: Path,
    n: int,
    offset: int,
    concurrency: int,
    rate_limit: float | None,
) -> tuple[DeliveryStats, float, float, float, float]:
    """Deliver n items with journaled bookkeeping; (stats, wall s, client cpu s, sandbox
    cpu s, merge s)."""
    engine = create_engine(f"duckdb:///{state_dir / 'state.duckdb'}", create_dirs=True)
    store = StateStore(engine, "connect_sync", "segment")
    store.migrate()
    journal = AckJournal(state_dir / "journal", store)
    client = ConnectClient(
        ClientConfig(sandbox.api_url, API_KEY, concurrency=concurrency, rate_limit=rate_limit)
    )
    cpu0, remote0, t0 = own_cpu(), cpu_of(sandbox.process.pid), time.perf_counter()
    stats = asyncio.run(
        client.deliver(
            "track", items(n, offset), lambda keys: journal.delivered("event", keys, "bench")
        )
    )
    wall = time.perf_counter() - t0
    cpu, remote = own_cpu() - cpu0, cpu_of(sandbox.process.pid) - remote0
    t1 = time.perf_counter()
    journal.close()
    merge = time.perf_counter() - t1
    engine.dispose()
    return stats, wall, cpu, remote, merge


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate-limit", type=float, default=100.0)
    parser.add_argument("--limited-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; concurrency {args.concurrency}, batches of 100")

    with start_sandbox_process(API_KEY) as sandbox, tempfile.TemporaryDirectory() as tmp:
        # 1. no limit: who is the bottleneck?
        stats, wall, cpu, remote, merge = run(
            sandbox, Path(tmp) / "a", args.events, 0, args.concurrency, None
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        before = own_cpu()
        for _ in items(args.events, 10**9):  # what building the test items alone costs
            pass
        making = own_cpu() - before
        server = sandbox.stats()
        print(f"\n[1] {args.events:,} events, no rate limit, faults off")
        print(
            f"  delivered {stats.sent:,} in {wall:.2f} s: {stats.sent / wall:,.0f} items/s, "
            f"{stats.requests / wall:,.0f} req/s ({stats.requests} requests, "
            f"{stats.retries} retries)"
        )
        print(f"  sandbox: {server['events']:,} events, {server['duplicate_events']} duplicates")
        per = 1000 / stats.requests
        print(
            f"  CPU: client process {cpu:.2f} s ({cpu / wall:.0%} of one core), of which "
            f"{making:.2f} s building the test items; sandbox {remote:.2f} s "
            f"({remote / wall:.0%} of one core)"
        )
        print(
            f"  CPU per 100-item request: client {(cpu - making) * per:.2f} ms "
            f"(HTTP, JSON, bookkeeping), sandbox {remote * per:.2f} ms; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        print(f"  peak RSS of the client process: {peak:,.0f} MiB")
        print(
            f"  bookkeeping: journal merged into DuckDB in {merge:.2f} s "
            f"({stats.sent / merge:,.0f} rows/s)"
        )

        # 2. the client limited: share of its configured limit
        sandbox.reset()
        n = int(args.rate_limit * args.limited_seconds) * 100
        stats, wall, cpu, remote, _ = run(
            sandbox, Path(tmp) / "b", n, 10**8, args.concurrency, args.rate_limit
        )
        achieved = stats.requests / wall
        print(f"\n[2] {n:,} events, client --rate-limit {args.rate_limit:g} req/s")
        print(
            f"  {stats.requests} requests in {wall:.2f} s: {achieved:.1f} req/s = "
            f"{achieved / args.rate_limit:.1%} of the limit; {stats.sent / wall:,.0f} items/s; "
            f"429s {sandbox.stats()['rate_limited']}"
        )

        # 3. the server limits (429 + Retry-After), the client does not know the limit
        sandbox.reset()
        httpx.post(
            f"{sandbox.url}/_sandbox/faults",
            json={"rate_limit_per_s": args.rate_limit},
            timeout=10,
        ).raise_for_status()
        stats, wall, cpu, remote, _ = run(
            sandbox, Path(tmp) / "c", n, 2 * 10**8, args.concurrency, None
        )
        accepted = stats.requests - stats.rate_limited
        print(
            f"\n[3] {n:,} events, sandbox limit {args.rate_limit:g} req/s (429 + Retry-After), "
            "client unlimited"
        )
        print(
            f"  {accepted} accepted requests in {wall:.2f} s: {accepted / wall:.1f} req/s = "
            f"{accepted / wall / args.rate_limit:.1%} of the server's limit; "
            f"{stats.rate_limited} answered 429; "
            f"duplicates {sandbox.stats()['duplicate_events']}"
        )


if __name__ == "__main__":
    main()
