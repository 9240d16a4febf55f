"""Duplicates a flaky network makes: how many items the sandbox stored more than once.

Connect has no idempotency key: when it processed a request whose answer the job never saw,
a retry stores the items again. Two scenarios against a sandbox child process:

1. `slow`: every request is stored at once but answered `--slow-ms` (default 1500) later,
   beyond the client's `--timeout-s` (default 1.0);
2. `cut`: `--drop-rate` (default 0.1) of the requests are stored, then the connection is
   closed without an answer (unavoidable duplicates: the client cannot tell these from
   requests dropped before processing, which it must resend).

Prints, per scenario: items sent, acknowledged, failed, stored, duplicates, requests, seconds.
Asserts nothing.

    python benchmarks/duplicates.py [--items 2000] [--concurrency 4] [--max-retries 3]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections.abc import Iterator

from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process

API_KEY = "dup-key"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-retries", type=int, default=3)
    parser.add_argument("--timeout-s", type=float, default=1.0)
    parser.add_argument("--slow-ms", type=float, default=1500)
    parser.add_argument("--drop-rate", type=float, default=0.1)
    args = parser.parse_args()
    with start_sandbox_process(API_KEY) as sandbox:
        scenario(sandbox, "slow", args, slow_answer_ms=args.slow_ms)
        scenario(sandbox, "cut", args, drop_after_rate=args.drop_rate)


if __name__ == "__main__":
    main()
