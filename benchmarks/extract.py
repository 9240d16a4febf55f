"""Extraction benchmark: Segment `identifies` from each warehouse dialect, native vs. rows path.

Backends: `duckdb` (a temporary file), `postgres` (the test PostgreSQL), `redshift` (the
sqlalchemy-redshift dialect over psycopg2, against the same PostgreSQL with
`sslmode=disable`), `snowflake` (fakesnow, the in-process emulator, its databases kept in a
temporary folder) and `bigquery` (bqemulator started as a local server for the run).

For each backend and size it measures, each in a fresh child process (rows/s, peak RSS):

- `stream`: `SegmentSource.iter_identifies()` on the native path, `chunk_size` rows per
  frame, every frame consumed and dropped (peak RSS should stay flat); the reader it used
  is printed (`frames.native_path`: `duckdb`, `adbc`, `sqlalchemy`, ...);
- `rows`: the same with `SegmentSource(..., native=False)`: the plain SQLAlchemy row path
  (server-side cursor, `fetchmany` into Arrow), what `stream` is compared with;
- `frame`: `SegmentSource.identifies()`, the whole result as one DataFrame (what the users
  stream materializes);
- `read_sql`: `pandas.read_sql` of the very same statement over the same SQLAlchemy engine.

The data is generated inside each database by one `CREATE TABLE AS SELECT` (no files in
git, no row inserts): DuckDB's `range`, PostgreSQL's `generate_series`, Snowflake's
`GENERATOR`, BigQuery's `UNNEST(GENERATE_ARRAY(...))` (the statement translated by sqlglot).
PostgreSQL and Redshift schemas `bench_extract_<backend>_<pid>_<size>` are dropped
afterwards. The emulators are slow, so they get their own, smaller sizes (`--emulator-sizes`).

    python benchmarks/extract.py                       # duckdb and postgres, 1M and 5M rows
    python benchmarks/extract.py --backends duckdb --sizes 1000000
    python benchmarks/extract.py --backends duckdb postgres redshift snowflake bigquery \\
        --sizes 100000 --methods stream rows             # every dialect, native vs. rows
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

POSTGRES_URL = os.environ.get(
    "CONNECT_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
BQEMULATOR = os.environ.get("CONNECT_SYNC_TEST_BQEMULATOR") or str(
    ROOT / ".venv-bqemulator" / "bin" / "bqemulator"
)
#: bqemulator's command line with its Storage Read API mended (the tests' wrapper, run by
#: the emulator's own interpreter).
BQEMULATOR_SERVER = ROOT / "tests" / "integration" / "dialects" / "bqemulator_server.py"
SNOWFLAKE_URL = "snowflake://user:secret@account/bench_db"  # fakesnow: any account will do
BIGQUERY_PROJECT = "bench-project"
BACKENDS = ("duckdb", "postgres", "redshift", "snowflake", "bigquery")
#: Backends measured against an emulator, and which one.
EMULATED = {"snowflake": "fakesnow", "bigquery": "bqemulator"}

#: One identify call per row, shaped like Segment's: ids, times, context, traits with nulls.
#: Written in DuckDB's SQL, which PostgreSQL and Snowflake speak too (BigQuery gets it
#: through sqlglot); `{rows}` is a FROM item yielding `g` = 1..n.
GENERATE = """
CREATE TABLE {table} AS
SELECT
    'idf-' || md5(CAST(g AS VARCHAR)) AS id,
    'anon-' || substr(md5(CAST(g * 7 AS VARCHAR)), 1, 16) AS anonymous_id,
    CASE WHEN mod(g, 5) = 0 THEN NULL
        ELSE 'user-' || CAST(CAST(floor(g / 2) AS BIGINT) AS VARCHAR) END AS user_id,
    to_timestamp(1790000000 + g + 1) AS received_at,
    to_timestamp(1790000000 + g + 2) AS sent_at,
    to_timestamp(1790000000 + g) AS original_timestamp,
    to_timestamp(1790000000 + g) AS {timestamp},
    to_timestamp(1790000000 + g + 300) AS uuid_ts,
    CASE mod(g, 3) WHEN 0 THEN 'analytics-ios' WHEN 1 THEN 'analytics-android'
        ELSE 'analytics.js' END AS context_library_name,
    '10.0.' || CAST(mod(g, 250) AS VARCHAR) || '.1' AS context_ip,
    CASE WHEN mod(g, 3) = 2 THEN NULL ELSE 'Europe/Berlin' END AS context_timezone,
    CASE mod(g, 3) WHEN 0 THEN 'ios' WHEN 1 THEN 'android' END AS context_device_type,
    CASE WHEN mod(g, 3) = 2 THEN NULL ELSE 'tok' || md5(CAST(g * 3 AS VARCHAR)) END
        AS context_device_token,
    CASE WHEN mod(g, 3) = 0 THEN NULL ELSE 'person' || CAST(g AS VARCHAR) || '@example.com' END
        AS email,
    CASE WHEN mod(g, 2) = 0 THEN NULL ELSE 'Name ' || CAST(g AS VARCHAR) END AS name,
    CASE WHEN mod(g, 4) = 0 THEN 'Ana' END AS first_name,
    CASE WHEN mod(g, 4) = 0 THEN 'da Silva' END AS last_name,
    CASE mod(g, 4) WHEN 0 THEN 'free' WHEN 1 THEN 'startup' WHEN 2 THEN 'business'
        ELSE 'enterprise' END AS plan,
    CASE WHEN mod(g, 4) = 0 THEN NULL ELSE CAST(mod(g, 500) AS BIGINT) END AS logins,
    CASE WHEN mod(g, 3) = 0 THEN NULL ELSE mod(g, 10) = 0 END AS is_vip,
    CASE WHEN mod(g, 3) = 0 THEN to_timestamp(1750000000 + g) END AS created_at,
    CASE WHEN mod(g, 5) = 0 THEN 'Company ' || CAST(mod(g, 997) AS VARCHAR) END AS company_name,
    CASE WHEN mod(g, 3) = 1 THEN '+1 415' || CAST(2000000 + mod(g, 7999999) AS VARCHAR) END AS phone
FROM {rows}
"""

#: The FROM item yielding `g` = 1..n on each backend.
ROWS = {
    "duckdb": "range(1, {n} + 1) AS t(g)",
    "postgres": "generate_series(1, {n}) AS g",
    "redshift": "generate_series(1, {n}) AS g",  # built in PostgreSQL, the local stand-in
    "snowflake": "(SELECT ROW_NUMBER() OVER (ORDER BY SEQ4()) AS g "
    "FROM TABLE(GENERATOR(ROWCOUNT => {n})))",
    "bigquery": "UNNEST(GENERATE_ARRAY(1, {n})) AS g",
}


def _schema(backend: str, size: int) -> str:
    return f"bench_extract_{backend}_{os.getpid()}_{size}"


def redshift_url(postgres_url: str) -> str:
    """The test PostgreSQL through the Redshift dialect, without SSL (as the tests do)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(postgres_url).set(drivername="redshift+psycopg2")
    return url.update_query_dict({"sslmode": "disable"}).render_as_string(hide_password=False)


def generate_statements(backend: str, size: int, quote: Callable[[str], str]) -> list[str]:
    """The statements that create one schema's `identifies` of `size` rows (and the empty
    `aliases` and `tracks` a Segment schema has), in the backend's SQL."""
    schema = quote(_schema(backend, size))
    statements = [
        f"CREATE SCHEMA {schema}",
        GENERATE.format(
            table=f"{schema}.identifies", rows="__rows__", timestamp=quote("timestamp")
        ),
        *(f"CREATE TABLE {schema}.{table} (id VARCHAR)" for table in ("aliases", "tracks")),
    ]
    if backend == "bigquery":
        import sqlglot

        statements = [sqlglot.transpile(s, read="duckdb", write="bigquery")[0] for s in statements]
    return [s.replace("__rows__", ROWS[backend].format(n=size)) for s in statements]


# -- the warehouses: built, pointed at, torn down -----------------------------------------


@contextlib.contextmanager
def opened(spec: dict, *, create: bool = False) -> Iterator:
    """An engine on the spec's warehouse, made as the job makes it (`create_engine` with
    the connect arguments); fakesnow's patch is on meanwhile for Snowflake. `create`: a
    DuckDB file may be new."""
    from connect_sync.warehouse.engine import create_engine

    with contextlib.ExitStack() as stack:
        if spec.get("fakesnow_db_path"):
            import fakesnow

            stack.enter_context(fakesnow.patch(db_path=spec["fakesnow_db_path"]))
            _fakesnow_arrow_batches()
        engine = create_engine(
            spec["url"], create_dirs=create, connect_args=spec.get("connect_args")
        )
        try:
            yield engine
        finally:
            engine.dispose()


def _fakesnow_arrow_batches() -> None:
    """fakesnow 0.12.1's cursor lacks the connector's `fetch_arrow_batches` (the job's
    Snowflake reader): given one over the Arrow table it holds, as the tests' fixture does,
    in result chunks of Snowflake's usual size."""
    import pyarrow as pa
    from fakesnow.cursor import FakeSnowflakeCursor

    def fetch_arrow_batches(cursor, force_microsecond_precision: bool = False):
        return (pa.Table.from_batches([b]) for b in cursor._arrow_table.to_batches(10_000))

    if not hasattr(FakeSnowflakeCursor, "fetch_arrow_batches"):
        FakeSnowflakeCursor.fetch_arrow_batches = fetch_arrow_batches


def build(spec: dict, sizes: list[int]) -> None:
    """One CREATE TABLE AS SELECT per size; Redshift's tables are built over the plain
    PostgreSQL URL (the local stand-in), the others through their own dialect."""
    import sqlalchemy as sa

    backend = spec["backend"]
    target = {"backend": "postgres", "url": spec["postgres_url"]} if backend == "redshift" else spec
    with opened(target, create=True) as engine, engine.begin() as conn:
        quote = conn.dialect.identifier_preparer.quote
        if backend == "bigquery":  # written in DuckDB's quoting, then translated
            quote = lambda name: f'"{name}"'  # noqa: E731
        for size in sizes:
            for statement in generate_statements(backend, size, quote):
                conn.execute(sa.text(statement))
        if backend in ("postgres", "redshift"):
            for size in sizes:
                conn.execute(sa.text(f'ANALYZE "{_schema(backend, size)}".identifies'))


def drop_postgres(url: str, backend: str, sizes: list[int]) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for size in sizes:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{_schema(backend, size)}" CASCADE'))
    engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def bqemulator(executable: str, folder: Path) -> Iterator[tuple[str, str]]:
    """bqemulator (in-memory) on free loopback ports for the run, through the tests' wrapper
    that lets its Storage Read API read query results; its REST and gRPC endpoints."""
    if not Path(executable).exists():
        raise RuntimeError(
            f"bqemulator not found at {executable} (--bqemulator PATH, or "
            "$CONNECT_SYNC_TEST_BQEMULATOR; .ci/run installs it in .venv-bqemulator)"
        )
    import httpx

    rest, grpc = _free_port(), _free_port()
    log = folder / "bqemulator.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(str(Path(executable).with_name("python")), str(BQEMULATOR_SERVER)),
                *("start", "--rest-port", str(rest), "--grpc-port", str(grpc)),
                *("--project", BIGQUERY_PROJECT, "--log-level", "warning"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=folder,
        )
    endpoint = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{endpoint}/bigquery/v2/projects/{BIGQUERY_PROJECT}/datasets", timeout=2)
                break
            except httpx.HTTPError as exc:
                if process.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text()[-2000:]
                    raise RuntimeError(f"bqemulator did not start: {tail}") from exc
                time.sleep(0.5)
        yield endpoint, f"127.0.0.1:{grpc}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextlib.contextmanager
def warehouse(
    backend: str, sizes: list[int], tmp: Path, args: argparse.Namespace
) -> Iterator[dict]:
    """The backend's tables of `sizes` rows, built; the spec a child opens them with."""
    spec: dict = {"backend": backend, "postgres_url": args.postgres_url}
    with contextlib.ExitStack() as stack:
        if backend == "duckdb":
            spec["url"] = f"duckdb:///{tmp / 'identifies.duckdb'}"
        elif backend == "postgres":
            spec["url"] = args.postgres_url
        elif backend == "redshift":
            spec["url"] = redshift_url(args.postgres_url)
        elif backend == "snowflake":
            spec["url"] = SNOWFLAKE_URL
            (tmp / "fakesnow").mkdir()
            spec["fakesnow_db_path"] = str(tmp / "fakesnow")
        elif backend == "bigquery":
            endpoint, grpc = stack.enter_context(bqemulator(args.bqemulator, tmp))
            spec["url"] = f"bigquery://{BIGQUERY_PROJECT}"
            spec["connect_args"] = {
                "project": BIGQUERY_PROJECT,
                "api_endpoint": endpoint,
                "storage_api_endpoint": grpc,
                "credentials": "anonymous",
            }
        else:
            raise SystemExit(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        if backend in ("postgres", "redshift"):
            stack.callback(drop_postgres, args.postgres_url, backend, sizes)
        build(spec, sizes)
        yield spec


# -- one measurement, in a child process ------------------------------------------------------


def child(spec: dict, schema: str, method: str, chunk_size: int) -> dict:
    warnings.simplefilter("ignore")  # stderr carries only a failure's traceback
    import pandas as pd
    from connect_sync.transforms.columns import identify_read_columns
    from connect_sync.warehouse.frames import native_path
    from connect_sync.warehouse.segment import SegmentSource

    with opened(spec) as engine:
        source = SegmentSource(engine, schema, chunk_size, native=method != "rows")
        columns = identify_read_columns(source.columns("identifies"))
        with engine.connect() as conn:
            reader = native_path(conn)
        started = time.perf_counter()
        rows = 0
        if method in ("stream", "rows"):
            for frame in source.iter_identifies(columns=columns):
                rows += len(frame)
            reader = reader if method == "stream" else "sqlalchemy"
        elif method == "frame":
            rows = len(source.identifies(columns=columns))
        else:  # pandas.read_sql of the same statement
            clause = source.clause("identifies_all", {}, identifies="identifies", columns=columns)
            with engine.connect() as conn:
                rows = len(pd.read_sql(clause, conn))
            reader = "pandas"
        seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "seconds": seconds,
        "peak_rss_mb": peak_rss_mb(),
        "columns": len(columns),
        "reader": reader,
    }


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


def measure(spec: dict, schema: str, method: str, chunk_size: int, timeout: float) -> dict:
    command = [sys.executable, __file__, "--child", json.dumps(spec), schema, method]
    command.append(str(chunk_size))
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=True, cwd=ROOT
        )
    except subprocess.TimeoutExpired:  # subprocess.run kills the child
        return {"timeout": timeout}
    except subprocess.CalledProcessError as exc:
        lines = exc.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit {exc.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["duckdb", "postgres"], choices=BACKENDS)
    parser.add_argument("--sizes", nargs="+", type=int, default=[1_000_000, 5_000_000])
    parser.add_argument(
        "--emulator-sizes",
        nargs="+",
        type=int,
        default=[100_000],
        help="Sizes for snowflake (fakesnow) and bigquery (bqemulator): the emulators are slow.",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["stream", "rows", "frame", "read_sql"],
        choices=["stream", "rows", "frame", "read_sql"],
    )
    parser.add_argument("--chunk-size", type=int, default=100_000)
    parser.add_argument("--postgres-url", default=POSTGRES_URL)
    parser.add_argument("--bqemulator", default=BQEMULATOR, help="The bqemulator executable.")
    parser.add_argument("--timeout", type=float, default=300, help="Seconds per measurement.")
    args = parser.parse_args()
    # the emulators' drivers warn on every read; what they warn of is printed once below
    warnings.filterwarnings("ignore", message="Arrow output on a DB-API result")
    warnings.filterwarnings("ignore", message="Cannot create BigQuery Storage client")

    print(f"chunk_size={args.chunk_size}; each figure from a fresh child process")
    print(
        f"{'backend':9} {'rows':>9} {'method':9} {'reader':10} {'seconds':>8} "
        f"{'rows/s':>11} {'peak RSS':>10}"
    )
    results: dict[tuple[str, int, str], dict] = {}
    for backend in args.backends:
        sizes = args.emulator_sizes if backend in EMULATED else args.sizes
        started = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="bench-extract-") as tmp:
            try:
                with warehouse(backend, sizes, Path(tmp), args) as spec:
                    emulator = f" ({EMULATED[backend]} emulator)" if backend in EMULATED else ""
                    print(
                        f"# {backend}{emulator}: generated {sizes} rows in "
                        f"{time.perf_counter() - started:.1f} s",
                        flush=True,
                    )
                    if backend == "bigquery":
                        print(f"# bigquery: {_bigquery_rows_path()}")
                    for size in sizes:
                        for method in args.methods:
                            schema = _schema(backend, size)
                            r = measure(spec, schema, method, args.chunk_size, args.timeout)
                            results[(backend, size, method)] = r
                            _print_row(backend, size, method, r)
            except Exception as exc:  # one backend failing (no emulator, no server) is reported
                print(f"# {backend}: {type(exc).__name__}: {str(exc).splitlines()[0]}")
    _summary(results, args)


def _bigquery_rows_path() -> str:
    """What BigQuery's reads go through: both paths read a result longer than its first page
    through the Storage Read API (the emulator's gRPC endpoint); the rows path turns its
    Arrow into a Python row each, as the DB-API does."""
    import importlib.util

    if importlib.util.find_spec("google.cloud.bigquery_storage") is None:
        return "REST pages (google-cloud-bigquery-storage not installed)"
    return "Storage Read API at the emulator's gRPC endpoint (rows path: DB-API rows from it)"


def _print_row(backend: str, size: int, method: str, r: dict) -> None:
    if "rows" not in r:
        print(f"{backend:9} {size:>9} {method:9} {r}", flush=True)
        return
    rate = r["rows"] / r["seconds"]
    print(
        f"{backend:9} {r['rows']:>9} {method:9} {r['reader']:10} {r['seconds']:>8.2f} "
        f"{rate:>11,.0f} {r['peak_rss_mb']:>7.0f} MB",
        flush=True,
    )


def _summary(results: dict, args: argparse.Namespace) -> None:
    print("# native path / rows path (rows/s)")
    for (backend, size, method), stream in results.items():
        rows = results.get((backend, size, "rows"), {})
        if method != "stream" or "rows" not in stream or "rows" not in rows:
            continue
        ratio = rows["seconds"] / stream["seconds"]
        print(f"{backend} {size:,}: {stream['reader']} / sqlalchemy rows = {ratio:.2f}x")
    goals = {"duckdb": 2_000_000, "postgres": 300_000}
    print("# goals")
    for backend in (b for b in args.backends if b in goals):
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
        _, _, spec, schema, method, chunk = sys.argv
        print(json.dumps(child(json.loads(spec), schema, method, int(chunk))))
    else:
        main()
