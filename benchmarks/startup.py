"""Start-up costs: what a command pays before and while it begins its work.

Each figure is the median of `--repeat` child processes, run interleaved so that the
machine's noise falls on every row alike:

- `python -c pass`: the interpreter alone (the floor);
- `connect-sync --help`;
- `import connect_sync.flows.pipeline`: the sync path, before any run;
- `connect-sync sync --dry-run` of a demo warehouse (`--users`, default 20,000) with numba's
  kernel cache empty (`cold`: a fresh worker or container, `NUMBA_CACHE_DIR` a new folder)
  and filled by the run before (`warm`); wall and CPU seconds. Twice: with the kernels the
  install compiled ahead of time (`aot`, `transforms/_kernels`: what a fresh virtual
  environment or container runs first, since the machine code comes with the install), and
  with numba's JIT fallback (`jit`, `CONNECT_SYNC_JIT_KERNELS=1`: an install without them).

Asserts nothing.

    python benchmarks/startup.py [--users 20000] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BUILD = (
    "import sys; from pathlib import Path; "
    "from connect_sync.warehouse.demo import build_demo_warehouse; "
    "build_demo_warehouse(Path(sys.argv[1]), int(sys.argv[2]), 7)"
)


def timed(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one child process run to its end."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(
        command,
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=True,
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    python = sys.executable
    cli = str(Path(python).with_name("connect-sync"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        warehouse = folder / "demo.duckdb"
        subprocess.run([python, "-c", BUILD, str(warehouse), str(args.users)], check=True)
        rows: dict[str, list[tuple[float, float]]] = {}

        def dry_run(label: str, round_: int, cache: Path) -> None:
            env = {
                "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{warehouse}",
                "CONNECT_SYNC_JOURNAL_DIR": str(folder / f"journal-{label}-{round_}"),
                "NUMBA_CACHE_DIR": str(cache),
                "CONNECT_SYNC_JIT_KERNELS": "1" if label.endswith("jit") else "0",
            }
            command = [cli, "sync", "--dry-run", "--output", str(folder / "out.jsonl")]
            rows.setdefault(f"sync --dry-run, {args.users:,} users, {label}", []).append(
                timed(command, env)
            )

        for round_ in range(args.repeat):
            for label, command in (
                ("python -c pass", [python, "-c", "pass"]),
                ("connect-sync --help", [cli, "--help"]),
                (
                    "import connect_sync.flows.pipeline",
                    [python, "-c", "import connect_sync.flows.pipeline"],
                ),
            ):
                rows.setdefault(label, []).append(timed(command))
            for kernels in ("aot", "jit"):
                cache = folder / f"numba-{kernels}-{round_}"  # empty: a fresh worker
                dry_run(f"cold, {kernels}", round_, cache)
                dry_run(f"warm, {kernels}", round_, cache)  # the cache the cold run filled
        print(f"{'command':58} {'wall s':>8} {'cpu s':>8}  (median of {args.repeat})")
        for label, samples in rows.items():
            wall = statistics.median(w for w, _ in samples)
            cpu = statistics.median(c for _, c in samples)
            print(f"{label:58} {wall:8.2f} {cpu:8.2f}")
        for kernels in ("aot", "jit"):
            cold, warm = (
                statistics.median(
                    w for w, _ in rows[f"sync --dry-run, {args.users:,} users, {state}, {kernels}"]
                )
                for state in ("cold", "warm")
            )
            print(f"cold / warm dry run, {kernels}: {cold / warm:.2f}x")


if __name__ == "__main__":
    main()
