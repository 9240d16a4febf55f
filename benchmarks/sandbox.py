"""Sandbox throughput: items/s accepted in 100-item batches over real loopback HTTP.

Starts the sandbox as a child process (in memory, or SQLite with --db), then drives it from
separate client processes, each with several concurrent keep-alive httpx connections, for a
bounded number of requests. Prints the figures; asserts nothing.

    python benchmarks/sandbox.py [--requests 4000] [--clients 1] [--concurrency 8]
                                 [--kind track|identify] [--db PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

import httpx
import orjson
from connect_sync.connect.sandbox.server import start_sandbox_process

API_KEY = "bench-key"
BATCH = 100


def batch_body(kind: str, client: int, index: int) -> bytes:
    """One realistic 100-item batch; distinct users and events so nothing is a duplicate."""
    base = (client * 10_000_000) + index * BATCH
    if kind == "track":
        items = [
            {
                "user_id": f"user-{(base + i) % 50_000}",
                "event": ("Order Completed", "Product Viewed", "Signed Up", "Cart Viewed")[i % 4],
                "properties": {"order_id": f"o-{base + i}", "revenue": 19.99, "items": 2},
                "timestamp": 1_700_000_000 + base + i,
            }
            for i in range(BATCH)
        ]
    else:
        items = [
            {
                "user_id": f"user-{base + i}",
                "email": f"user{base + i}@example.com",
                "first_name": "Ada",
                "timezone": "Europe/Berlin",
                "attributes": {"plan": "pro", "seats": i},
            }
            for i in range(BATCH)
        ]
    return orjson.dumps(items)


async def drive_httpx(url: str, kind: str, bodies: list[bytes], concurrency: int) -> int:
    """Send with httpx, as the sync job does (its CPU cost on the client side is real)."""
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-Outbound-Key": API_KEY, "Content-Type": "application/json"}
    queue = list(reversed(bodies))
    failed = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:

        async def worker() -> None:
            nonlocal failed
            while queue:
                response = await http.post(f"/v2/{kind}/batch", content=queue.pop())
                failed += response.status_code != 200

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def drive_raw(url: str, kind: str, bodies: list[bytes], concurrency: int) -> int:
    """Send over plain keep-alive HTTP/1.1 connections: a client light enough to leave
    the CPU to the server on a small machine (it reads each response in full)."""
    host, port = url.removeprefix("http://").split(":")
    head = (
        f"POST /v2/{kind}/batch HTTP/1.1\r\nHost: {host}:{port}\r\n"
        f"X-Outbound-Key: {API_KEY}\r\nContent-Type: application/json\r\n"
    ).encode()
    queue = list(reversed(bodies))
    failed = 0

    async def worker() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            while queue:
                body = queue.pop()
                writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
                status_and_headers = await reader.readuntil(b"\r\n\r\n")
                status = int(status_and_headers.split(b" ", 2)[1])
                length = 0
                for line in status_and_headers.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                if length:
                    await reader.readexactly(length)
                failed += status != 200
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def drive(
    url: str, kind: str, client: int, requests: int, concurrency: int, how: str = "raw"
) -> int:
    bodies = [batch_body(kind, client, i) for i in range(requests)]
    sender = drive_raw if how == "raw" else drive_httpx
    return await sender(url, kind, bodies, concurrency)


def client_process(args: tuple) -> None:
    url, kind, client, requests, concurrency, how, barrier, results = args
    bodies = [batch_body(kind, client, i) for i in range(requests)]
    sender = drive_raw if how == "raw" else drive_httpx
    barrier.wait()
    results.put(asyncio.run(sender(url, kind, bodies, concurrency)))


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process so far (Linux), to report server-side cost."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(
    kind: str, requests: int, clients: int, concurrency: int, how: str, db: Path | None
) -> dict:
    extra = ["--db", str(db)] if db else []
    with start_sandbox_process(API_KEY, extra_args=extra) as sandbox:
        warm = asyncio.run(drive(sandbox.url, kind, 99, 20, 2, how))  # connections, caches
        assert warm == 0, "warm-up requests failed"
        sandbox.reset()
        ctx = mp.get_context("spawn")
        barrier = ctx.Barrier(clients + 1)
        results = ctx.Queue()
        per_client = requests // clients
        procs = [
            ctx.Process(
                target=client_process,
                args=((sandbox.url, kind, c, per_client, concurrency, how, barrier, results),),
            )
            for c in range(clients)
        ]
        for p in procs:
            p.start()
        barrier.wait()
        started, cpu_before = time.perf_counter(), cpu_seconds(sandbox.process.pid)
        failed = sum(results.get() for _ in procs)
        elapsed = time.perf_counter() - started
        cpu_after = cpu_seconds(sandbox.process.pid)
        for p in procs:
            p.join()
        stats = sandbox.stats()
    sent = per_client * clients
    accepted = stats[f"{kind}_items"]
    return {
        "kind": kind,
        "storage": "sqlite file" if db else "memory",
        "requests": sent,
        "failed": failed,
        "items_accepted": accepted,
        "seconds": elapsed,
        "items_per_s": accepted / elapsed,
        "requests_per_s": sent / elapsed,
        "server_cpu_s": None if cpu_before is None else cpu_after - cpu_before,
        "ok": accepted == sent * BATCH and failed == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=4000, help="batches to send in all")
    parser.add_argument("--clients", type=int, default=1, help="client processes")
    parser.add_argument("--concurrency", type=int, default=8, help="connections per client")
    parser.add_argument("--kind", choices=("track", "identify", "both"), default="both")
    parser.add_argument("--storage", choices=("memory", "sqlite", "both"), default="both")
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: minimal keep-alive HTTP/1.1 client; httpx: the library the job uses",
    )
    args = parser.parse_args()
    kinds = ("track", "identify") if args.kind == "both" else (args.kind,)
    storages = ("memory", "sqlite") if args.storage == "both" else (args.storage,)
    print(
        f"sandbox throughput: {args.requests} batches of {BATCH} per run, {args.clients} "
        f"{args.client} client process(es) x {args.concurrency} connections"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for storage in storages:
            for kind in kinds:
                db = Path(tmp) / f"sandbox-{kind}.sqlite" if storage == "sqlite" else None
                r = run(kind, args.requests, args.clients, args.concurrency, args.client, db)
                cpu = r["server_cpu_s"]
                per_cpu = (
                    f"; {r['items_accepted'] / cpu:,.0f} items per server CPU-s" if cpu else ""
                )
                print(
                    f"{r['kind']:>8} {r['storage']:<11} {r['items_accepted']:>8} items "
                    f"in {r['seconds']:6.2f} s = {r['items_per_s']:>9,.0f} items/s "
                    f"({r['requests_per_s']:,.0f} req/s{per_cpu})"
                    f"{'' if r['ok'] else '  INCOMPLETE'}"
                )


if __name__ == "__main__":
    main()
