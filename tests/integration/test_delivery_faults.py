"""Delivery through a hostile network: 20% 5xx, a 50 req/s limit answered with 429s,
dropped connections and latency. Everything arrives once, and the books match Connect's."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings

FAULTS = {"error_rate": 0.2, "rate_limit_per_s": 50, "latency_ms": 20, "drop_rate": 0.05}


@pytest.fixture(scope="module")
def faulty_process() -> Iterator[SandboxProcess]:
    """A private sandbox, so its faults never reach other tests."""
    with start_sandbox_process("fault-key") as sandbox:
        yield sandbox


@pytest.fixture
def faulty(faulty_process: SandboxProcess) -> SandboxProcess:
    faulty_process.reset()
    faulty_process.set_faults(**FAULTS)
    return faulty_process


def test_client_delivers_every_item_once_through_faults(faulty) -> None:
    items = [
        (f"m-{i}", {"user_id": f"u-{i % 300}", "event": "Page Viewed", "timestamp": i})
        for i in range(20_000)
    ]
    acked: list[str] = []
    cfg = ClientConfig(faulty.api_url, faulty.api_key, concurrency=8, backoff_base_s=0.05)

    stats = asyncio.run(ConnectClient(cfg).deliver("track", iter(items), acked.extend))

    remote = faulty.stats()
    assert stats.sent == 20_000 and not stats.rejected and not stats.failed
    assert len(acked) == len(set(acked)) == 20_000
    assert remote["events"] == 20_000 and remote["duplicate_events"] == 0
    assert remote["rate_limited"] > 0 and remote["errors_injected"] > 0
    assert remote["connections_dropped"] > 0
    # every attempt the client made is one the sandbox counted, and vice versa
    assert stats.requests == remote["requests"]
    assert stats.rate_limited == remote["rate_limited"]
    assert stats.retries == remote["requests"] - 200


def test_sync_through_faults_ends_where_a_clean_sync_does(faulty, sandbox, tmp_path: Path) -> None:
    demo = tmp_path / "demo.duckdb"
    build_demo_warehouse(demo, users=3000, seed=5)
    clean_copy = tmp_path / "clean.duckdb"
    shutil.copy(demo, clean_copy)

    def settings(path: Path, target: SandboxProcess) -> Settings:
        return Settings(
            warehouse_url=f"duckdb:///{path}",
            api_url=target.api_url,
            api_key=target.api_key,
            max_retries=10,
        )

    report = run_sync(settings(demo, faulty), SyncOptions())
    clean = run_sync(settings(clean_copy, sandbox), SyncOptions())

    remote, expected = faulty.stats(), sandbox.stats()
    assert report.status == clean.status == "succeeded"
    assert remote["errors_injected"] > 0 and report.retries > 0
    # every user and event arrived, once
    assert remote["events"] == expected["events"] > 5_000
    assert remote["users"] == expected["users"] > 2_000
    assert remote["identify_items"] == expected["identify_items"]
    assert remote["duplicate_events"] == 0 and remote["rejected_items"] == 0
    # the run report's counts are the sandbox's
    tracks_sent = report.events_sent + report.pages_sent + report.screens_sent
    assert tracks_sent == remote["events"] == remote["track_items"]
    assert report.merges_sent + report.users_sent + report.groups_sent == remote["identify_items"]
    assert report.requests == remote["requests"]
    assert report.rate_limited == remote["rate_limited"]
    assert report.undelivered == 0 and not report.streams_failed
    # the books: a second run finds nothing left to send
    again = run_sync(settings(demo, faulty), SyncOptions())
    assert again.events_sent == again.users_sent == again.merges_sent == 0
    assert again.pages_sent == again.screens_sent == again.groups_sent == 0
    assert faulty.stats()["events"] == remote["events"]
