"""Peers: drt and dlt beside this job, same warehouse, same loopback sink (issue #20).

Installs drt-core and dlt (pinned below) into a virtual environment of their own
(`benchmarks/.peers-venv`, ignored by git, reused when its pins match), builds a
Segment-shaped DuckDB warehouse per size (N `identifies` rows, 1.3 rows per user: 100,000
rows are 76,923 users; every user's latest call carries all of its traits), then runs
three tools, interleaved, `--rounds` times, each as a child process timed whole (wall
time, peak RSS from `os.wait4`), each into a fresh sandbox process
(`python -m connect_sync.connect.sandbox`, in memory):

- drt (`drt run`): DuckDB source with the SQL below (latest row per user), REST API
  destination in batch mode, engine chunk (`sync.batch_size`) 10,000, 100 users per
  request, no rate limit;
- dlt: a resource reading the same SQL (`fetchmany` of 10,000 rows), a
  `@dlt.destination(batch_size=100, loader_file_format="typed-jsonl")` function that POSTs
  each 100 users with httpx, intermediate files not compressed;
- this job: `connect-sync sync --streams users --full-refresh`, fresh state and journal.

All three POST the same Connect bulk identify body (`/v2/identify/batch`, a JSON array of
`{attributes, email, first_name, last_name, phone_number, timezone, user_id}`); after each
run the users the sink stored are counted against the expected number and two stored
profiles are compared with the first tool's. Each round also measures the sink's own
limit: a bare httpx client posting pre-built 100-user bodies, 8 requests in flight.

Prints per size: median users/s, the ratio to the best peer, wall and CPU seconds, peak
RSS (the script stays small, ~40 MB, since a child's peak from `os.wait4` starts at its
parent's). Asserts nothing.

    python benchmarks/peers.py [--sizes 100000,1000000] [--rounds 3]
    # options: --venv DIR (default benchmarks/.peers-venv) --workdir DIR --timeout 1200
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from child import run_child
from connect_sync.connect.sandbox.server import start_sandbox_process

ROOT = Path(__file__).resolve().parent.parent
DRT_VERSION = "1.2.1"
DLT_VERSION = "1.31.0"
API_KEY = "peers-key"
ROWS_PER_USER = 1.3
SAMPLES = ("user-0", "user-1")  # profiles compared between tools

WAREHOUSE_SQL = """
CREATE SCHEMA segment;
CREATE TABLE segment.identifies AS
WITH calls AS (
    SELECT i, i % {users} AS k, i // {users} AS j, i >= {rows} - {users} AS latest
    FROM range({rows}) AS r(i)
)
SELECT
    printf('idf-%012d', i) AS id,
    'anon-' || k AS anonymous_id,
    'user-' || k AS user_id,
    TIMESTAMP '2026-01-01' + to_seconds(k * 7 + j * 86400) AS "timestamp",
    "timestamp" + INTERVAL 2 SECOND AS received_at,
    "timestamp" + INTERVAL 1 SECOND AS sent_at,
    "timestamp" AS original_timestamp,
    printf('%032x', hash(i)) AS uuid,
    received_at + INTERVAL 5 MINUTE AS uuid_ts,
    'analytics.js' AS context_library_name,
    '4.1.0' AS context_library_version,
    '10.0.' || (k % 250) AS context_ip,
    (['Europe/Berlin', 'America/New_York', 'Asia/Tokyo', 'America/Sao_Paulo'])[k % 4 + 1]
        AS context_timezone,
    CASE WHEN latest OR k % 2 = 0 THEN 'person' || k || '@example.com' END AS email,
    CASE WHEN latest THEN (['Ada', 'Grace', 'Alan', 'Edsger', 'Barbara'])[k % 5 + 1] END
        AS first_name,
    CASE WHEN latest THEN (['Lovelace', 'Hopper', 'Turing', 'Dijkstra', 'Liskov'])[k % 5 + 1]
        END AS last_name,
    CASE WHEN latest THEN '+1415' || (2000000 + k % 7000000) END AS phone,
    CASE WHEN latest THEN (['free', 'pro', 'team'])[k % 3 + 1] ELSE 'trial' END AS plan,
    CASE WHEN latest OR k % 3 = 0 THEN CAST(1 + (k * 7 + j) % 500 AS BIGINT) END AS logins,
    CASE WHEN latest THEN k % 10 = 0 END AS is_vip,
    CASE WHEN latest THEN 'Company ' || (k % 997) END AS company_name,
    CASE WHEN latest THEN TIMESTAMP '2025-01-01' + to_seconds(k * 13) END AS created_at
FROM calls
ORDER BY received_at
"""

# What the peers read: each user's latest identify row, shaped as the Connect identify
# body the job sends for this warehouse (its own rules give the same fields here, since
# the latest call carries every trait).
PEER_QUERY = """SELECT
    {'company_name': company_name,
     'created_at': strftime(created_at, '%Y-%m-%dT%H:%M:%SZ'),
     'is_vip': is_vip, 'logins': logins, 'plan': plan} AS attributes,
    email, first_name, last_name, phone AS phone_number, context_timezone AS timezone,
    user_id
FROM segment.identifies
WHERE user_id IS NOT NULL
QUALIFY row_number() OVER (
    PARTITION BY user_id ORDER BY "timestamp" DESC, received_at DESC, id DESC) = 1
"""

DRT_SYNC = """name: users
description: latest traits per user to the Connect bulk identify endpoint
model: {query}
destination:
  type: rest_api
  url: "{api_url}/identify/batch"
  method: POST
  headers:
    Content-Type: application/json
  body_mode: batch
  max_records_per_request: 100
  batch_template: "{{{{ rows | tojson_safe }}}}"
  auth:
    type: api_key
    header: X-Outbound-Key
    value_env: CONNECT_API_KEY
sync:
  mode: full
  batch_size: 10000
  rate_limit:
    requests_per_second: 0
  on_error: fail
"""

DLT_PIPELINE = '''"""dlt: each user's latest traits to the Connect bulk identify endpoint."""

import sys

import dlt
import duckdb
import httpx

warehouse, api_url, api_key, query, pipelines_dir = sys.argv[1:6]
http = httpx.Client(
    base_url=api_url,
    headers={"X-Outbound-Key": api_key, "Content-Type": "application/json"},
    timeout=30,
)


@dlt.destination(batch_size=100, loader_file_format="typed-jsonl", name="connect")
def connect(items, table) -> None:
    http.post("/identify/batch", json=items).raise_for_status()


@dlt.resource(name="users", write_disposition="append")
def users():
    con = duckdb.connect(warehouse, read_only=True)
    try:
        cursor = con.execute(query)
        columns = [d[0] for d in cursor.description]
        while rows := cursor.fetchmany(10_000):
            yield [dict(zip(columns, row)) for row in rows]
    finally:
        con.close()


pipeline = dlt.pipeline("peers_users", destination=connect, pipelines_dir=pipelines_dir)
print(pipeline.run(users()))
'''

# The sink's own limit: pre-built bodies, a bare httpx client, `concurrency` in flight.
SINK_CLIENT = """
import asyncio, sys, time
import httpx, orjson
url, key, users, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
zones = ["Europe/Berlin", "America/New_York", "Asia/Tokyo", "America/Sao_Paulo"]
def item(k):
    return {"attributes": {"company_name": f"Company {k % 997}",
                           "created_at": "2025-01-01T00:00:00Z", "is_vip": k % 10 == 0,
                           "logins": 1 + k * 7 % 500, "plan": "pro"},
            "email": f"person{k}@example.com", "first_name": "Ada", "last_name": "Lovelace",
            "phone_number": f"+1415{2000000 + k % 7000000}", "timezone": zones[k % 4],
            "user_id": f"user-{k}"}
bodies = [orjson.dumps([item(k) for k in range(s, min(s + 100, users))])
          for s in range(0, users, 100)]
async def main():
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"X-Outbound-Key": key, "Content-Type": "application/json"}
    failed = 0
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits) as http:
        async def worker(queue):
            nonlocal failed
            while queue:
                response = await http.post("/v2/identify/batch", content=queue.pop())
                failed += response.status_code != 200
        warm = list(bodies[: 4 * concurrency])  # connections open, server warm, then forgotten
        await asyncio.gather(*(worker(warm) for _ in range(concurrency)))
        (await http.post("/_sandbox/reset")).raise_for_status()
        queue = list(reversed(bodies))
        started = time.perf_counter()
        await asyncio.gather(*(worker(queue) for _ in range(concurrency)))
        return time.perf_counter() - started, failed
seconds, failed = asyncio.run(main())
print(orjson.dumps({"seconds": seconds, "failed": failed}).decode())
"""


@dataclass
class Run:
    seconds: float
    cpu_s: float
    peak_rss_mb: float
    exit: int
    users: int
    ok: bool
    note: str = ""


@dataclass
class Tool:
    key: str
    label: str
    runs: list[Run] = field(default_factory=list)


def peers_venv(path: Path) -> Path:
    """The peers' virtual environment, created and filled unless its pins match."""
    pins = [
        f"drt-core[duckdb]=={DRT_VERSION}",
        f"dlt=={DLT_VERSION}",
        # the same DuckDB as this job, so all three read the file with one engine
        f"duckdb=={importlib.metadata.version('duckdb')}",
        "httpx",
    ]
    marker = path / "peers-pins.txt"
    if marker.exists() and marker.read_text().split() == pins:
        return path
    print(f"installing {' '.join(pins)} into {path} ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(path)], check=True)
    python = str(path / "bin" / "python")
    subprocess.run([python, "-m", "pip", "install", "-q", *pins], check=True)
    marker.write_text("\n".join(pins) + "\n")
    return path


def build_warehouse(path: Path, rows: int) -> int:
    """The `identifies` table of N rows, built by a child process (so that this process
    stays small: a child's peak RSS from `os.wait4` starts at its parent's); returns the
    number of users."""
    users = round(rows / ROWS_PER_USER)
    path.unlink(missing_ok=True)
    build = (
        "import sys, duckdb; con = duckdb.connect(sys.argv[1]); "
        "con.execute('SET enable_progress_bar = false'); con.execute(sys.argv[2]); con.close()"
    )
    sql = WAREHOUSE_SQL.format(users=users, rows=rows)
    subprocess.run([sys.executable, "-c", build, str(path), sql], check=True)
    return users


def tool_command(
    key: str, work: Path, warehouse: Path, api_url: str, venv: Path
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of one tool's run in folder `work`."""
    home = work / "home"
    home.mkdir()
    if key == "job":
        cli = str(Path(sys.executable).with_name("connect-sync"))
        env = {
            "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{warehouse}",
            "CONNECT_SYNC_SOURCE_SCHEMA": "segment",
            "CONNECT_SYNC_STATE_URL": f"duckdb:///{work / 'state.duckdb'}",
            "CONNECT_SYNC_JOURNAL_DIR": str(work / "journal"),
            "CONNECT_SYNC_PROGRESS_INTERVAL": "60",
            "CONNECT_API_URL": api_url,
            "CONNECT_API_KEY": API_KEY,
        }
        return [cli, "sync", "--streams", "users", "--full-refresh"], env
    if key == "drt":
        (home / ".drt").mkdir()
        (home / ".drt" / "profiles.yml").write_text(
            f"warehouse:\n  type: duckdb\n  database: {json.dumps(str(warehouse))}\n"
            "  fetch_size: 10000\n"
        )
        (work / "drt_project.yml").write_text('name: peers\nversion: "0.1"\nprofile: warehouse\n')
        (work / "syncs").mkdir()
        (work / "syncs" / "users.yml").write_text(
            DRT_SYNC.format(query=json.dumps(PEER_QUERY), api_url=api_url)
        )
        env = {"HOME": str(home), "DO_NOT_TRACK": "1", "CONNECT_API_KEY": API_KEY}
        return [str(venv / "bin" / "drt"), "run", "--select", "users"], env
    script = work / "dlt_users.py"
    script.write_text(DLT_PIPELINE)
    env = {
        "HOME": str(home),
        "RUNTIME__DLTHUB_TELEMETRY": "false",
        "DATA_WRITER__DISABLE_COMPRESSION": "true",
    }
    command = [str(venv / "bin" / "python"), str(script), str(warehouse), api_url, API_KEY]
    return [*command, PEER_QUERY, str(work / "pipelines")], env


def profile(sandbox, user_id: str) -> dict | None:
    stored = sandbox.user(user_id)
    if stored is not None:
        stored.pop("created_at", None)  # the sandbox's clock
        stored.pop("updated_at", None)
    return stored


def run_tool(
    tool: Tool, folder: Path, warehouse: Path, users: int, venv: Path, timeout: float, ref: dict
) -> Run:
    work = Path(tempfile.mkdtemp(prefix=f"{tool.key}-", dir=folder))
    with start_sandbox_process(API_KEY) as sandbox:
        command, env = tool_command(tool.key, work, warehouse, sandbox.api_url, venv)
        result = run_child(command, work, env, timeout)
        stored = sandbox.stats()["users"]
        profiles = {user_id: profile(sandbox, user_id) for user_id in SAMPLES}
    notes = []
    if result["exit"] != 0:
        notes.append(f"exit {result['exit']}")
    if stored != users:
        notes.append(f"WRONG COUNT: {stored:,} users stored, {users:,} expected")
    for user_id, stored_profile in profiles.items():
        ref.setdefault(user_id, (tool.label, stored_profile))
        if stored_profile != ref[user_id][1]:
            notes.append(f"profile of {user_id} differs from {ref[user_id][0]}'s")
    if notes:
        tail = (work / "child.log").read_text(errors="replace").strip().splitlines()[-8:]
        notes.extend(f"    | {line}" for line in tail)
    note = "\n".join(notes)
    run = Run(
        result["seconds"],
        result["cpu_s"],
        result["peak_rss_mb"],
        result["exit"],
        stored,
        not notes,
        note,
    )
    tool.runs.append(run)
    shutil.rmtree(work, ignore_errors=True)
    return run


def sink_limit(users: int, concurrency: int, timeout: float) -> tuple[float, bool]:
    """Items/s the sandbox takes from a bare httpx client with pre-built bodies."""
    with start_sandbox_process(API_KEY) as sandbox:
        probe = [sandbox.url, API_KEY, str(users), str(concurrency)]
        done = subprocess.run(
            [sys.executable, "-c", SINK_CLIENT, *probe],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        )
        stored = sandbox.stats()["users"]
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    return users / figures["seconds"], stored == users and figures["failed"] == 0


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def report(
    rows: int, users: int, tools: list[Tool], sink: list[float], rounds: int, concurrency: int
) -> None:
    speeds = {t.key: median([users / r.seconds for r in t.runs]) for t in tools}
    best_peer = max(speed for key, speed in speeds.items() if key != "job")
    print(
        f"\n{rows:,} identify rows ({users:,} users), median of {rounds} round(s); "
        f"users/s = users stored / whole-process wall time; CPU s of the tool's process"
    )
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"(this script's own peak RSS, {floor:,.0f} MB, is a floor under each child's peak)")
    print(
        f"{'tool':48} {'users/s':>9} {'vs best peer':>13} {'wall s':>7} {'CPU s':>6} "
        f"{'peak RSS MB':>12} {'(max)':>6}  delivered"
    )
    for tool in tools:
        rss = [r.peak_rss_mb for r in tool.runs]
        print(
            f"{tool.label:48} {speeds[tool.key]:>9,.0f} {speeds[tool.key] / best_peer:>12.2f}x "
            f"{median([r.seconds for r in tool.runs]):>7.1f} "
            f"{median([r.cpu_s for r in tool.runs]):>6.1f} {median(rss):>12,.0f} "
            f"{max(rss):>6,.0f}  {sum(r.ok for r in tool.runs)}/{len(tool.runs)} runs exact"
        )
    label = f"sink alone: bare httpx client, {concurrency} in flight"
    print(f"{label:48} {median(sink):>9,.0f} items/s (range {min(sink):,.0f}-{max(sink):,.0f})")
    ratio = speeds["job"] / best_peer
    job_rss = median([r.peak_rss_mb for t in tools if t.key == "job" for r in t.runs])
    peer_rss = min(median([r.peak_rss_mb for r in t.runs]) for t in tools if t.key != "job")
    print(
        f"goals: at least 3x the best peer: {'met' if ratio >= 3 else 'missed'} ({ratio:.2f}x); "
        f"peak RSS no more than the peers': {'met' if job_rss <= peer_rss else 'missed'} "
        f"({job_rss:,.0f} MB against {peer_rss:,.0f} MB)",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100000,1000000", help="identify rows, comma-separated")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--venv", type=Path, default=ROOT / "benchmarks" / ".peers-venv")
    parser.add_argument("--workdir", type=Path, default=None, help="default: a temporary folder")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds per run")
    parser.add_argument("--concurrency", type=int, default=8, help="the sink probe's requests")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    venv = peers_venv(args.venv.resolve())
    versions = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import importlib.metadata as m; "
         "print(m.version('drt-core'), m.version('dlt'), m.version('duckdb'))"],
        capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    drt_version, dlt_version, duckdb_version = versions
    print(
        f"drt-core {drt_version}, dlt {dlt_version}, DuckDB {duckdb_version} (peers); "
        f"this job with DuckDB {importlib.metadata.version('duckdb')}, Python "
        f"{sys.version.split()[0]}, {os.cpu_count()} cores"
    )
    if args.workdir:
        args.workdir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="bench-peers-", dir=args.workdir) as tmp:
        folder = Path(tmp)
        for rows in sizes:
            warehouse = folder / f"identifies-{rows}.duckdb"
            started = time.perf_counter()
            users = build_warehouse(warehouse, rows)
            print(
                f"\nwarehouse: {rows:,} identify rows, {users:,} users "
                f"({time.perf_counter() - started:.1f} s)",
                flush=True,
            )
            tools = [
                Tool("drt", f"drt {drt_version} (chunk 10,000, 100 a request)"),
                Tool("dlt", f"dlt {dlt_version} (typed-jsonl, no compression)"),
                Tool("job", "this job (sync --streams users --full-refresh)"),
            ]
            sink: list[float] = []
            ref: dict = {}
            for round_ in range(args.rounds):
                speed, ok = sink_limit(users, args.concurrency, args.timeout)
                sink.append(speed)
                print(
                    f"round {round_ + 1}: sink alone {speed:,.0f} items/s"
                    f"{'' if ok else '  INCOMPLETE'}  (load average "
                    f"{' '.join(f'{x:.1f}' for x in os.getloadavg())})",
                    flush=True,
                )
                shift = round_ % len(tools)
                for tool in tools[shift:] + tools[:shift]:
                    run = run_tool(tool, folder, warehouse, users, venv, args.timeout, ref)
                    print(
                        f"round {round_ + 1}: {tool.label:48} {run.seconds:7.1f} s "
                        f"{users / run.seconds:>9,.0f} users/s  CPU {run.cpu_s:5.1f} s  peak RSS "
                        f"{run.peak_rss_mb:>6,.0f} MB  {run.users:,} users stored"
                        + (f"\n{run.note}" if run.note else ""),
                        flush=True,
                    )
            report(rows, users, tools, sink, args.rounds, args.concurrency)
            for stale in (warehouse, warehouse.with_suffix(".duckdb.wal")):
                stale.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
