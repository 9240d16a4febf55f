"""Partitioned runs on a local Dask cluster through Prefect, against real PostgreSQL and
private sandboxes: the same profiles and events as one process, one shared rate limit."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import psutil
import pytest
import sqlalchemy as sa
from connect_sync.connect.sandbox.server import start_sandbox_process
from connect_sync.flows.pipeline import (
    ConfigurationError,
    SyncOptions,
    check_partitioning,
    run_sync,
)
from connect_sync.transforms.partition import partition_of
from connect_sync.warehouse.demo import build_frames

from connect_sync.settings import Settings
from tests.segment_rows import drop_schemas

RATE = 60.0  # requests per second configured for the run
SANDBOX_LIMIT = RATE * 1.15  # the sandbox answers 429 above this
KEY = "partition-key"
CONCURRENCY, BATCH = 2, 25
IN_FLIGHT_WINDOW = CONCURRENCY * BATCH  # what one killed worker may have had in flight
SERVER_TIMES = {"created_at", "updated_at"}  # when the sandbox stored the profile


def test_partition_hash_is_stable_across_dtypes_and_balanced() -> None:
    ids = pd.Series([f"user-{i}" for i in range(20_000)])
    parts = partition_of(ids, 4)
    for dtype in (object, "string", "string[pyarrow]"):
        assert (partition_of(ids.astype(dtype), 4) == parts).all()
    # a fixed id always lands in the same partition (SipHash with a fixed key)
    assert partition_of(pd.Series(["user-1", "anon-xyz"]), 7).tolist() == [
        int(partition_of(pd.Series(["user-1"]), 7)[0]),
        int(partition_of(pd.Series(["anon-xyz"]), 7)[0]),
    ]
    counts = np.bincount(parts, minlength=4)
    assert counts.min() > 0.9 * len(ids) / 4
    assert partition_of(pd.Series([None, "a"], dtype=object), 3)[0] == 0


def test_duckdb_state_refuses_partitions(tmp_path: Path) -> None:
    settings = Settings(warehouse_url=f"duckdb:///{tmp_path / 'w.duckdb'}")
    with pytest.raises(ConfigurationError, match="PostgreSQL state store"):
        check_partitioning(settings, SyncOptions(partitions=4))
    with pytest.raises(ConfigurationError, match="--dry-run"):
        check_partitioning(settings, SyncOptions(partitions=2, dry_run=True))
    check_partitioning(settings, SyncOptions(partitions=1))


def test_cli_refuses_partitions_with_duckdb_state_in_one_line(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    env.update(CONNECT_SYNC_WAREHOUSE_URL=f"duckdb:///{tmp_path / 'w.duckdb'}", CONNECT_API_KEY="k")
    for args, message in (
        (["--partitions", "4"], "needs a PostgreSQL state store"),
        (["--partitions", "0"], "at least 1"),
        (["--dask-address", "tcp://127.0.0.1:8786"], "--dask-address goes with --partitions"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "connect_sync", "sync", *args],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert message in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1


@pytest.mark.postgres
def test_shared_rate_limit_is_one_schedule_for_every_worker(
    postgres_url: str, pg_schema: str
) -> None:
    from connect_sync.flows.shared_rate import SharedRateLimiter
    from connect_sync.warehouse.ratelimit import ensure_table, limit_name

    engine = sa.create_engine(postgres_url)
    ensure_table(engine, pg_schema)
    name = limit_name("http://connect", "key")
    rate = 50.0
    workers = [SharedRateLimiter(rate, engine, pg_schema, name) for _ in range(3)]
    starts: list[float] = []
    lock = threading.Lock()

    def send(limiter: SharedRateLimiter) -> None:
        for _ in range(30):
            delay = limiter.reserve()
            with lock:
                starts.append(time.monotonic() + delay)

    threads = [threading.Thread(target=send, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    engine.dispose()
    starts.sort()
    # 90 requests from 3 "workers" at 50/s: spaced as one limiter would space them (to
    # within the jitter of a database round trip): any 10 in a row span 8 intervals or more
    span = np.array(starts[10:]) - np.array(starts[:-10])
    assert span.min() >= 8 / rate, span.min()
    assert starts[-1] - starts[0] >= (len(starts) - 2) / rate
    assert all(w.bookings >= 30 // w.lease for w in workers)


def load_demo(url: str, schema: str, users: int, seed: int = 11) -> None:
    """The demo warehouse's tables, in a PostgreSQL schema."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        for table, frame in build_frames(users, seed).items():
            frame.to_sql(table, conn, schema=schema, index=False, method="multi", chunksize=2000)
    engine.dispose()


def remote(db: Path) -> tuple[dict[str, dict], Counter]:
    """Every profile (user id -> profile, without the server's own arrival times) and every
    event of a sandbox's SQLite file."""
    con = sqlite3.connect(db)
    try:
        users = {
            user: {k: v for k, v in orjson.loads(profile).items() if k not in SERVER_TIMES}
            for user, profile in con.execute("SELECT user_id, profile FROM users")
        }
        events = Counter(
            con.execute("SELECT user_id, event, properties, timestamp FROM events").fetchall()
        )
    finally:
        con.close()
    return users, events


def settled_profile(profile: dict) -> dict:
    """A profile as a run leaves it. A user's current `group_id`/`group_attributes` is the
    group named last: the groups stream sends the current groups only after every other
    group is delivered, so neither concurrent batches nor a killed worker's batch sent
    again can leave an older group current."""
    groups = profile.get("groups") or {}
    if groups:
        assert profile.get("group_id") in groups, profile
    return profile


def settled_profiles(users: dict[str, dict]) -> dict[str, dict]:
    return {user: settled_profile(profile) for user, profile in users.items()}


@pytest.fixture(scope="module")
def prefect_harness() -> Iterator[None]:
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def settings_for(url: str, schema: str, api_url: str, state_schema: str, tmp: Path) -> Settings:
    return Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=state_schema,
        api_url=api_url,
        api_key=KEY,
        rate_limit=RATE,
        batch_size=5,  # many small requests: the rate limit binds for seconds
        journal_dir=tmp / f"journal-{state_schema}",
    )


@pytest.mark.slow
@pytest.mark.postgres
def test_four_partitions_on_dask_match_one_process_under_one_rate_limit(
    prefect_harness, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    from connect_sync.flows.sync import run_job_flow
    from distributed import LocalCluster

    load_demo(postgres_url, pg_schema, users=600)
    limit = ["--rate-limit", str(SANDBOX_LIMIT)]
    single_db, parted_db = tmp_path / "single.sqlite", tmp_path / "parted.sqlite"
    with start_sandbox_process(KEY, extra_args=["--db", str(single_db), *limit]) as sandbox:
        one = run_sync(
            settings_for(postgres_url, pg_schema, sandbox.api_url, f"{pg_schema}_state", tmp_path),
            SyncOptions(),
        )
        single_stats = sandbox.stats()
    assert one.status == "succeeded" and one.events_sent > 1000

    state = f"{pg_schema}_state"  # dropped by the pg_schema fixture
    # an existing cluster, reached by its address (the kill test below uses a temporary one)
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    with (
        cluster,
        start_sandbox_process(KEY, extra_args=["--db", str(parted_db), *limit]) as sandbox,
    ):
        settings = settings_for(postgres_url, pg_schema, sandbox.api_url, state + "p", tmp_path)
        try:
            report = run_job_flow(
                settings, SyncOptions(partitions=4), dask_address=cluster.scheduler_address
            )
            stats = sandbox.stats()
        finally:
            drop_schemas(postgres_url, f"{state}p")

    assert report.status == "succeeded", report.streams_failed
    assert (report.users_sent, report.events_sent, report.merges_sent) == (
        one.users_sent,
        one.events_sent,
        one.merges_sent,
    )
    assert stats["duplicate_events"] == 0 and single_stats["duplicate_events"] == 0
    assert stats["rate_limited"] == 0, stats  # one limit for all workers, never exceeded
    assert stats["requests"] > 2 * RATE  # the limit did bind for seconds
    (parted_users, parted_events), (single_users, single_events) = (
        remote(parted_db),
        remote(single_db),
    )
    assert settled_profiles(parted_users) == settled_profiles(single_users)
    assert parted_events == single_events


def dask_worker_processes() -> list[psutil.Process]:
    """The worker processes of the local Dask cluster (children spawned by its nannies)."""
    workers = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
        except psutil.Error:
            continue
        if "multiprocessing" in command and "spawn" in command:
            workers.append(child)
    return workers


@pytest.mark.slow
@pytest.mark.postgres
def test_a_killed_dask_worker_then_a_rerun_loses_nothing(
    prefect_harness, postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    from connect_sync.flows.sync import run_job_flow

    load_demo(postgres_url, pg_schema, users=1500, seed=5)
    clean_db, killed_db = tmp_path / "clean.sqlite", tmp_path / "killed.sqlite"
    with start_sandbox_process(KEY, extra_args=["--db", str(clean_db)]) as sandbox:
        clean = run_sync(
            settings_for(
                postgres_url, pg_schema, sandbox.api_url, f"{pg_schema}_state", tmp_path
            ).model_copy(update={"rate_limit": None, "batch_size": BATCH}),
            SyncOptions(),
        )
        expected = sandbox.stats()
    assert clean.status == "succeeded" and expected["track_items"] > 3000

    state = f"{pg_schema}_state"
    slow = ["--db", str(killed_db), "--latency-ms", "100"]
    killed: list[int] = []
    try:
        with start_sandbox_process(KEY, extra_args=slow) as sandbox:
            settings = settings_for(
                postgres_url, pg_schema, sandbox.api_url, state + "k", tmp_path
            ).model_copy(
                update={"rate_limit": None, "batch_size": BATCH, "concurrency": CONCURRENCY}
            )

            def kill_one_worker_mid_run() -> None:
                deadline = time.monotonic() + 240
                while time.monotonic() < deadline:
                    if sandbox.stats()["track_items"] >= expected["track_items"] // 3:
                        workers = dask_worker_processes()
                        if workers:
                            workers[0].send_signal(signal.SIGKILL)
                            killed.append(workers[0].pid)
                        return
                    time.sleep(0.02)

            killer = threading.Thread(target=kill_one_worker_mid_run, daemon=True)
            killer.start()
            try:
                first = run_job_flow(settings, SyncOptions(partitions=4))
                first_status = first.status
            except Exception as exc:  # the run may fail with its worker: the rerun recovers
                first_status = f"raised {type(exc).__name__}"
            killer.join(timeout=5)
            at_kill = sandbox.stats()
            assert killed, "no Dask worker was killed"
            assert at_kill["track_items"] >= expected["track_items"] // 3

            second = run_job_flow(settings, SyncOptions(partitions=4))
            assert second.status == "succeeded", (first_status, second.streams_failed)
            stats = sandbox.stats()
    finally:
        drop_schemas(postgres_url, f"{state}k")

    got_users, got_events = remote(killed_db)
    want_users, want_events = remote(clean_db)
    # every profile, as one process makes it (see settled_profile for the one field that
    # depends on arrival order)
    got, want = settled_profiles(got_users), settled_profiles(want_users)
    differ = sorted(u for u in want.keys() | got.keys() if got.get(u) != want.get(u))
    assert not differ, [(u, want.get(u), got.get(u)) for u in differ[:3]]
    assert set(got_events) == set(want_events)  # no event lost
    resent = sum(got_events.values()) - sum(want_events.values())
    assert resent == stats["duplicate_events"] <= IN_FLIGHT_WINDOW  # one worker's in flight
    assert stats["track_items"] - expected["track_items"] <= IN_FLIGHT_WINDOW
