"""The flows under Prefect's test harness, and prefect.yaml resolving every entrypoint."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest
import yaml
from connect_sync.flows.pipeline import SyncOptions
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def test_prefect_yaml_deployments_resolve() -> None:
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    deployments = {d["name"]: d for d in config["deployments"]}
    assert {"connect-sync-production", "connect-sync-development", "connect-sync-backfill"} <= set(
        deployments
    )
    for deployment in deployments.values():
        module_path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(module_path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        assert hasattr(flow, "fn"), f"{deployment['entrypoint']} is not a Prefect flow"
        accepted = set(flow.parameters.properties)
        assert set(deployment.get("parameters", {})) <= accepted
        assert deployment["concurrency_limit"]["limit"] == 1
        assert deployment["concurrency_limit"]["collision_strategy"] == "CANCEL_NEW"
    production = deployments["connect-sync-production"]
    development = deployments["connect-sync-development"]
    assert production["parameters"]["source_schema"] != development["parameters"]["source_schema"]
    assert production["parameters"]["api_key_secret"] != development["parameters"]["api_key_secret"]
    assert production["schedules"] and development["schedules"]
    assert not deployments["connect-sync-backfill"]["schedules"]
    assert {"start", "end"} <= set(
        importlib.import_module("connect_sync.flows.sync").backfill.parameters.properties
    )


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_flows_run_under_prefect(prefect_harness, tmp_path: Path, sandbox, monkeypatch) -> None:
    from connect_sync.flows.sync import backfill, run_job_flow, sync
    from prefect.blocks.system import Secret

    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, users=60)
    monkeypatch.setenv("CONNECT_SYNC_WAREHOUSE_URL", f"duckdb:///{path}")
    monkeypatch.setenv("CONNECT_API_URL", sandbox.api_url)
    monkeypatch.delenv("CONNECT_API_KEY", raising=False)
    Secret(value=sandbox.api_key).save("connect-test-key", overwrite=True)

    report = sync(source_schema="segment", api_key_secret="connect-test-key")
    assert report["status"] == "succeeded"
    tracked = sum(report[f"{s}_sent"] for s in ("events", "pages", "screens"))
    assert sandbox.stats()["events"] == tracked and report["events_sent"] > 0

    again = backfill(
        start="2026-01-01T00:00:00Z",
        end="2027-01-01T00:00:00Z",
        source_schema="segment",
        api_key_secret="connect-test-key",
    )
    # The window holds every event: each one is read again and found delivered already.
    assert again["status"] == "succeeded"
    assert again["events_read"] - again["events_deduplicated"] >= report["events_sent"]
    assert again["events_unchanged"] == report["events_sent"] > 0
    assert again["events_sent"] == 0
    assert again["pages_unchanged"] == report["pages_sent"] and again["pages_sent"] == 0
    assert sandbox.stats()["events"] == tracked
    assert sandbox.stats()["duplicate_events"] == 0

    cli_report = run_job_flow(
        Settings(
            warehouse_url=f"duckdb:///{path}", api_url=sandbox.api_url, api_key=sandbox.api_key
        ),
        SyncOptions(dry_run=True),
    )
    assert cli_report.status == "succeeded"


def test_backfill_flow_rejects_inverted_window(prefect_harness) -> None:
    from connect_sync.flows.sync import backfill

    with pytest.raises(ValueError, match="end must be after start"):
        backfill(start="2026-02-01T00:00:00Z", end="2026-01-01T00:00:00Z")
