"""Delivery engine throughput: the real client and the real bookkeeping into the sandbox.

Three runs against a sandbox child process (in memory, faults off):

1. `--events` track items (default 200,000) with no rate limit: (a) streamed from a
   generator: items/s, requests/s and peak memory of this process; (b) from a built
   payload list, as the pipeline holds them: the CPU per request of this process's event
   loop (thread_time) and of the sandbox (/proc/<pid>/stat), i.e. which is the bottleneck;
2. the same with the client limited to `--rate-limit` req/s (default 100) for about
   `--limited-seconds`: the achieved share of the configured limit;
3. the client unlimited, the sandbox limiting to `--rate-limit` req/s with 429s: the share
   of the server's limit the client achieves by honouring Retry-After.

Every acknowledged batch goes through the production path: `AckJournal` appends, merged
into a DuckDB `StateStore` in bulk (in the background every 25k keys, then the rest).
Items are generated lazily and streamed through the client's bounded queue. Prints
figures; asserts nothing.

    python benchmarks/delivery.py [--events 200000] [--rate-limit 100]
                                  [--limited-seconds 20] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
from connect_sync.connect.client import ClientConfig, DeliveryStats
from connect_sync.connect.outbox import ApiOutbox
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.journal import AckJournal
from connect_sync.warehouse.state import StateStore

API_KEY = "bench-key"
TICKS = os.sysconf("SC_CLK_TCK")
EVENTS = ("Order Completed", "Product Viewed", "Signed Up", "Cart Viewed")
loop_cpu: list[float] = []  # CPU of the event-loop thread per run (HTTP, JSON, journal)
merges: list[tuple[int, float, float]] = []  # (keys merged, seconds merging, final wait)


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


def rss_mib() -> float:
    status = Path("/proc/self/status").read_text()
    return int(status.split("VmRSS:")[1].split()[0]) / 1024


def run(
    sandbox: SandboxProcess,
    state_dir: Path,
    source: Iterable[tuple[str, dict]],
    concurrency: int,
    rate_limit: float | None,
) -> tuple[DeliveryStats, float, float, float, float]:
    """Deliver the items with journaled bookkeeping; (stats, wall s, client cpu s, sandbox
    cpu s, final merge wait s)."""
    engine = create_engine(f"duckdb:///{state_dir / 'state.duckdb'}", create_dirs=True)
    store = StateStore(engine, "connect_sync", "segment")
    store.migrate()
    journal = AckJournal(state_dir / "journal", store)
    outbox = ApiOutbox(
        ClientConfig(sandbox.api_url, API_KEY, concurrency=concurrency, rate_limit=rate_limit)
    )
    cpu0, loop0 = own_cpu(), time.thread_time()
    remote0, t0 = cpu_of(sandbox.process.pid), time.perf_counter()
    stats = outbox.send("track", source, lambda keys: journal.delivered("event", keys, "bench"))
    wall = time.perf_counter() - t0
    cpu, remote = own_cpu() - cpu0, cpu_of(sandbox.process.pid) - remote0
    loop_cpu.append(time.thread_time() - loop0)
    t1 = time.perf_counter()
    journal.close()
    tail = time.perf_counter() - t1
    engine.dispose()
    merges.append((journal.merged_keys, journal.merge_seconds, tail))
    return stats, wall, cpu, remote, tail


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--rate-limit", type=float, default=100.0)
    parser.add_argument("--limited-seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores; concurrency {args.concurrency}, batches of 100")

    with start_sandbox_process(API_KEY) as sandbox, tempfile.TemporaryDirectory() as tmp:
        # 1a. no limit, items streamed from a generator: throughput and memory
        baseline = rss_mib()
        stats, wall, cpu, remote, _ = run(
            sandbox, Path(tmp) / "a", items(args.events), args.concurrency, None
        )
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        server = sandbox.stats()
        keys, seconds, tail = merges[-1]
        print(f"\n[1a] {args.events:,} events streamed from a generator, no rate limit")
        print(
            f"  delivered {stats.sent:,} in {wall:.2f} s: {stats.sent / wall:,.0f} items/s, "
            f"{stats.requests / wall:,.0f} req/s ({stats.requests} requests, "
            f"{stats.retries} retries); sandbox: {server['events']:,} events, "
            f"{server['duplicate_events']} duplicates"
        )
        print(
            f"  client memory: {baseline:,.0f} MiB RSS after imports (interpreter, pandas, DuckDB, "
            f"httpx), peak {peak:,.0f} MiB (+{peak - baseline:,.0f}: state store, journal merges)"
        )
        print(
            f"  bookkeeping: {keys:,} acknowledged ids merged from the journal into DuckDB in "
            f"{seconds:.2f} s ({keys / seconds:,.0f} rows/s, background thread); "
            f"{tail:.2f} s of it after the last response"
        )

        # 1b. no limit, from a payload list as the pipeline has it: where the CPU goes
        sandbox.reset()
        payloads = list(items(args.events, 10**9))
        stats, wall, cpu, remote, _ = run(
            sandbox, Path(tmp) / "a2", payloads, args.concurrency, None
        )
        del payloads
        loop = loop_cpu[-1]
        per = 1000 / stats.requests
        print(f"\n[1b] {args.events:,} events from a built payload list (as the pipeline has them)")
        print(
            f"  delivered {stats.sent:,} in {wall:.2f} s: {stats.sent / wall:,.0f} items/s, "
            f"{stats.requests / wall:,.0f} req/s"
        )
        print(
            f"  CPU: client {cpu:.2f} s = event loop {loop:.2f} s (HTTP, JSON, journal "
            f"appends) + journal merges {cpu - loop:.2f} s (background thread); "
            f"sandbox {remote:.2f} s"
        )
        print(
            f"  CPU per 100-item request: client event loop {loop * per:.2f} ms, "
            f"sandbox {remote * per:.2f} ms -> the "
            f"{'sandbox' if remote > loop else 'client'} is the bottleneck "
            f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
        )

        # 2. the client limited: share of its configured limit
        sandbox.reset()
        n = int(args.rate_limit * args.limited_seconds) * 100
        stats, wall, cpu, remote, _ = run(
            sandbox, Path(tmp) / "b", items(n, 10**8), args.concurrency, args.rate_limit
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
            sandbox, Path(tmp) / "c", items(n, 2 * 10**8), args.concurrency, None
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

        bookkeeping_paths(Path(tmp))


def bookkeeping_paths(folder: Path, n: int = 20_000) -> None:
    """The old per-batch INSERT (a transaction of 100 rows per acknowledgement) against the
    journal (one append per acknowledgement, one bulk merge), on DuckDB and PostgreSQL."""
    import sqlalchemy as sa

    urls = [("DuckDB", f"duckdb:///{folder / 'paths.duckdb'}")]
    pg = os.environ.get(
        "CONNECT_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        probe = sa.create_engine(pg)
        with probe.connect():
            urls.append(("PostgreSQL", pg))
        probe.dispose()
    except Exception:
        pass
    ids = [f"msg-{i:09d}" for i in range(n)]
    print(f"\n[4] bookkeeping of {n:,} acknowledged ids in batches of 100")
    for name, url in urls:
        schema = f"bench_{os.getpid()}"
        engine = create_engine(url, create_dirs=True)
        store = StateStore(engine, schema, "segment")
        store.migrate()
        table = store.table("delivered")
        started = time.perf_counter()
        for i in range(0, n, 100):  # what record_delivered did per batch before the journal
            rows = [
                {
                    "source_schema": "segment",
                    "kind": "old",
                    "message_id": m,
                    "run_id": "r",
                    "delivered_at": datetime.now(UTC),
                }
                for m in ids[i : i + 100]
            ]
            store._insert(table, rows, ["source_schema", "kind", "message_id"])
        old = time.perf_counter() - started
        journal = AckJournal(folder / f"paths-{name}", store)
        started = time.perf_counter()
        for i in range(0, n, 100):
            journal.delivered("event", ids[i : i + 100], "r")
        appended = time.perf_counter() - started
        journal.close()
        total = time.perf_counter() - started
        print(
            f"  {name:10}: per-batch INSERT {n / old:10,.0f} rows/s; journal: appends "
            f"{n / appended:12,.0f} ids/s, appends + bulk merge {n / total:10,.0f} ids/s"
        )
        if name == "PostgreSQL":
            with engine.begin() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        engine.dispose()


if __name__ == "__main__":
    main()
