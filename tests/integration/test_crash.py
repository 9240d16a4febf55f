"""A sync killed with SIGKILL mid-delivery, then run again: nothing is lost, and nothing
acknowledged is sent twice (only the requests in flight at the kill may be)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import sqlalchemy as sa
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings

CONCURRENCY = 8
BATCH = 100
IN_FLIGHT_WINDOW = CONCURRENCY * BATCH


@pytest.fixture(scope="module")
def slow_process() -> Iterator[SandboxProcess]:
    with start_sandbox_process("crash-key") as sandbox:
        yield sandbox


@pytest.fixture
def slow(slow_process: SandboxProcess) -> SandboxProcess:
    slow_process.reset()
    slow_process.set_faults(latency_ms=60)
    return slow_process


def sync_process(warehouse: Path, target: SandboxProcess, cwd: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    env.update(
        CONNECT_SYNC_WAREHOUSE_URL=f"duckdb:///{warehouse}",
        CONNECT_API_URL=target.api_url,
        CONNECT_API_KEY=target.api_key,
        CONNECT_SYNC_CONCURRENCY=str(CONCURRENCY),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "connect_sync", "sync"],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("stage", ["users", "events"])
def test_sigkill_mid_delivery_then_rerun_loses_nothing_and_resends_at_most_in_flight(
    stage: str, slow, sandbox, tmp_path: Path
) -> None:
    demo = tmp_path / "demo.duckdb"
    build_demo_warehouse(demo, users=5000, seed=13)
    clean_copy = tmp_path / "clean.duckdb"
    shutil.copy(demo, clean_copy)
    clean = run_sync(
        Settings(
            warehouse_url=f"duckdb:///{clean_copy}",
            api_url=sandbox.api_url,
            api_key=sandbox.api_key,
            journal_dir=tmp_path / "clean-journal",
        ),
        SyncOptions(),
    )
    expected = sandbox.stats()
    assert clean.status == "succeeded" and expected["events"] > 10_000
    counter = "identify_items" if stage == "users" else "track_items"
    half = expected[counter] // 2

    first = sync_process(demo, slow, tmp_path)
    deadline = time.monotonic() + 120
    while slow.stats()[counter] < half:
        assert first.poll() is None, first.communicate()
        assert time.monotonic() < deadline, "the sync never got halfway"
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=30)
    at_kill = slow.stats()
    assert first.returncode == -signal.SIGKILL
    assert at_kill[counter] < expected[counter]  # killed mid-delivery indeed

    second = sync_process(demo, slow, tmp_path)
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, out + err
    assert "Traceback" not in err

    remote = slow.stats()
    # nothing missing (the sandbox stores a duplicate as one more event, and counts it)
    assert remote["events"] - remote["duplicate_events"] == expected["events"]
    assert remote["users"] == expected["users"]
    # re-sent: no more than the requests in flight at the kill
    assert remote["duplicate_events"] <= IN_FLIGHT_WINDOW
    assert remote["track_items"] - expected["track_items"] <= IN_FLIGHT_WINDOW
    assert remote["identify_items"] - expected["identify_items"] <= IN_FLIGHT_WINDOW
    # the second run recovered the killed run's acknowledgements from its journal
    engine = sa.create_engine(f"duckdb:///{demo}")
    with engine.connect() as conn:
        reports = conn.execute(
            sa.text("SELECT report FROM connect_sync.runs WHERE status = 'succeeded'")
        ).scalars()
        recovered = [orjson.loads(r)["acks_recovered"] for r in reports]
    engine.dispose()
    assert recovered and recovered[0] > 0
    assert not list(tmp_path.glob("demo.duckdb.journal/*/*.acks"))
