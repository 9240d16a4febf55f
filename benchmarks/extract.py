"""Extraction benchmark: Segment `identifies` of 1M and 5M rows from DuckDB and PostgreSQL.

For each backend and size it measures, each in a fresh child process:

- `stream`: `SegmentSource.iter_identifies()` (the native Arrow path, `chunk_size` rows per
  frame), every frame consumed and dropped: rows/s and peak RSS (should stay flat);
- `frame`: `SegmentSource.identifies()`, the whole result as one DataFrame (what the users
  stream materializes);
- `read_sql`: `pandas.read_sql` of the very same statement over the same SQLAlchemy engine.

The data is generated inside the database (no files in git): a DuckDB file in a temporary
folder, and PostgreSQL schemas `bench_extract_<pid>_<size>` dropped afterwards.

    python benchmarks/extract.py                       # both backends, 1M and 5M rows
    python benchmarks/extract.py --backends duckdb --sizes 1000000
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get(
    "CONNECT_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)

#: One identify call per row, shaped like Segment's: ids, times, context, traits with nulls.
#: `{rows}` is a FROM item yielding `g` = 1..n; the rest is SQL both backends speak.
GENERATE = """
CREATE TABLE {table} AS
SELECT
    'idf-' || md5(CAST(g AS VARCHAR)) AS id,
    'anon-' || substr(md5(CAST(g * 7 AS VARCHAR)), 1, 16) AS anonymous_id,
    CASE WHEN g % 5 = 0 THEN NULL ELSE 'user-' || CAST(g / 2 AS VARCHAR) END AS user_id,
    to_timestamp(1790000000 + g + 1) AS received_at,
    to_timestamp(1790000000 + g + 2) AS sent_at,
    to_timestamp(1790000000 + g) AS original_timestamp,
    to_timestamp(1790000000 + g) AS "timestamp",
    to_timestamp(1790000000 + g + 300) AS uuid_ts,
    CASE g % 3 WHEN 0 THEN 'analytics-ios' WHEN 1 THEN 'analytics-android'
        ELSE 'analytics.js' END AS context_library_name,
    '10.0.' || CAST(g % 250 AS VARCHAR) || '.1' AS context_ip,
    CASE WHEN g % 3 = 2 THEN NULL ELSE 'Europe/Berlin' END AS context_timezone,
    CASE g % 3 WHEN 0 THEN 'ios' WHEN 1 THEN 'android' END AS context_device_type,
    CASE WHEN g % 3 = 2 THEN NULL ELSE 'tok' || md5(CAST(g * 3 AS VARCHAR)) END
        AS context_device_token,
    CASE WHEN g % 3 = 0 THEN NULL ELSE 'person' || CAST(g AS VARCHAR) || '@example.com' END
        AS email,
    CASE WHEN g % 2 = 0 THEN NULL ELSE 'Name ' || CAST(g AS VARCHAR) END AS name,
    CASE WHEN g % 4 = 0 THEN 'Ana' END AS first_name,
    CASE WHEN g % 4 = 0 THEN 'da Silva' END AS last_name,
    CASE g % 4 WHEN 0 THEN 'free' WHEN 1 THEN 'startup' WHEN 2 THEN 'business'
        ELSE 'enterprise' END AS plan,
    CASE WHEN g % 4 = 0 THEN NULL ELSE CAST(g % 500 AS BIGINT) END AS logins,
    CASE WHEN g % 3 = 0 THEN NULL ELSE g % 10 = 0 END AS is_vip,
    CASE WHEN g % 3 = 0 THEN to_timestamp(1750000000 + g) END AS created_at,
    CASE WHEN g % 5 = 0 THEN 'Company ' || CAST(g % 997 AS VARCHAR) END AS company_name,
    CASE WHEN g % 3 = 1 THEN '+1 415' || CAST(2000000 + g % 7999999 AS VARCHAR) END AS phone
FROM {rows}
"""


def _schema(size: int) -> str:
    return f"bench_extract_{os.getpid()}_{size}"


def build_duckdb(path: Path, sizes: list[int]) -> None:
    import duckdb

    con = duckdb.connect(str(path))
    try:
        for size in sizes:
            schema = _schema(size)
            con.execute(f'CREATE SCHEMA "{schema}"')
            con.execute(
                GENERATE.format(
                    table=f'"{schema}".identifies', rows=f"range(1, {size + 1}) AS t(g)"
                )
            )
            for table in ("aliases", "tracks"):  # a Segment schema has them; empty here
                con.execute(f'CREATE TABLE "{schema}".{table} (id VARCHAR)')
    finally:
        con.close()


def build_postgres(url: str, sizes: list[int]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for size in sizes:
            schema = _schema(size)
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
            conn.execute(
                sa.text(
                    GENERATE.format(
                        table=f'"{schema}".identifies', rows=f"generate_series(1, {size}) AS g"
                    )
                )
            )
            for table in ("aliases", "tracks"):
                conn.execute(sa.text(f'CREATE TABLE "{schema}".{table} (id VARCHAR)'))
    with engine.begin() as conn:
        for size in sizes:
            conn.execute(sa.text(f'ANALYZE "{_schema(size)}".identifies'))
    engine.dispose()


def drop_postgres(url: str, sizes: list[int]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for size in sizes:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{_schema(size)}" CASCADE'))
    engine.dispose()


# -- one measurement, in a child process ------------------------------------------------------


def child(url: str, schema: str, method: str, chunk_size: int) -> dict:
    import pandas as pd
    import sqlalchemy as sa
    from connect_sync.transforms.columns import identify_read_columns
    from connect_sync.warehouse.segment import SegmentSource

    engine = sa.create_engine(url)
    source = SegmentSource(engine, schema, chunk_size)
    columns = identify_read_columns(source.columns("identifies"))
    started = time.perf_counter()
    rows = 0
    if method == "stream":
        for frame in source.iter_identifies(columns=columns):
            rows += len(frame)
    elif method == "frame":
        rows = len(source.identifies(columns=columns))
    else:  # pandas.read_sql of the same statement
        clause = source.clause("identifies_all", {}, identifies="identifies", columns=columns)
        with engine.connect() as conn:
            rows = len(pd.read_sql(clause, conn))
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": seconds, "peak_rss_mb": peak_rss_mb(), "columns": len(columns)}


def peak_rss_mb() -> float:
    """This process's own peak RSS. Linux's `ru_maxrss` carries over exec the high-water
    mark of the process that forked it (here the parent, after generating the tables), so
    the kernel's per-memory-map `VmHWM` is read instead where there is one."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(url: str, schema: str, method: str, chunk_size: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--child", url, schema, method, str(chunk_size)]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=True, cwd=ROOT
        )
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    except subprocess.CalledProcessError as exc:
        return {"error": exc.stderr.strip().splitlines()[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["duckdb", "postgres"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 5_000_000])
    parser.add_argument("--methods", nargs="+", default=["stream", "frame", "read_sql"])
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--timeout", type=float, default=300, help="Seconds per measurement.")
    args = parser.parse_args()

    print(f"chunk_size={args.chunk_size}; each figure from a fresh child process")
    print(f"{'backend':9} {'rows':>9} {'method':9} {'seconds':>8} {'rows/s':>11} {'peak RSS':>10}")
    results: dict[tuple[str, int, str], dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
        for backend in args.backends:
            path = Path(tmp) / "identifies.duckdb"
            url = f"duckdb:///{path}" if backend == "duckdb" else args.postgres_url
            started = time.perf_counter()
            try:
                if backend == "duckdb":
                    build_duckdb(path, args.sizes)
                else:
                    build_postgres(url, args.sizes)
                print(
                    f"# {backend}: generated {args.sizes} rows in "
                    f"{time.perf_counter() - started:.1f} s"
                )
                for size in args.sizes:
                    for method in args.methods:
                        r = measure(url, _schema(size), method, args.chunk_size, args.timeout)
                        results[(backend, size, method)] = r
                        if "rows" not in r:
                            print(f"{backend:9} {size:>9} {method:9} {r}")
                            continue
                        rate = r["rows"] / r["seconds"]
                        print(
                            f"{backend:9} {r['rows']:>9} {method:9} {r['seconds']:>8.2f} "
                            f"{rate:>11,.0f} {r['peak_rss_mb']:>7.0f} MB",
                            flush=True,
                        )
            finally:
                if backend == "postgres":
                    drop_postgres(url, args.sizes)
    _summary(results, args)


def _summary(results: dict, args: argparse.Namespace) -> None:
    goals = {"duckdb": 2_000_000, "postgres": 300_000}
    print("# goals")
    for backend in args.backends:
        small, large = min(args.sizes), max(args.sizes)
        stream_small = results.get((backend, small, "stream"), {})
        stream_large = results.get((backend, large, "stream"), {})
        if "rows" in stream_small and "rows" in stream_large and small != large:
            ratio = stream_large["peak_rss_mb"] / stream_small["peak_rss_mb"]
            print(
                f"{backend}: stream peak RSS {large:,} / {small:,} rows = {ratio:.2f}x "
                f"({'ok' if ratio <= 1.3 else 'MISS'}: goal <= 1.3x)"
            )
        for size in args.sizes:
            stream = results.get((backend, size, "stream"), {})
            pandas = results.get((backend, size, "read_sql"), {})
            if "rows" not in stream:
                continue
            rate = stream["rows"] / stream["seconds"]
            line = (
                f"{backend} {size:,}: {rate:,.0f} rows/s "
                f"({'ok' if rate >= goals[backend] else 'MISS'}: goal >= {goals[backend]:,})"
            )
            if "rows" in pandas:
                speedup = pandas["seconds"] / stream["seconds"]
                line += f"; {speedup:.1f}x pandas.read_sql ({'ok' if speedup >= 3 else 'MISS'})"
            print(line)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, url, schema, method, chunk = sys.argv
        print(json.dumps(child(url, schema, method, int(chunk))))
    else:
        main()
