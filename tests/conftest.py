"""Shared fixtures: real DuckDB and PostgreSQL warehouses, the sandbox over real HTTP."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process

from tests.segment_rows import drop_schemas

POSTGRES_URL = os.environ.get(
    "CONNECT_SYNC_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
SANDBOX_KEY = "test-key"


def postgres_available() -> bool:
    try:
        engine = sa.create_engine(POSTGRES_URL)
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        engine.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def sandbox_process() -> Iterator[SandboxProcess]:
    """One sandbox server for the session (a child process on a free loopback port)."""
    with start_sandbox_process(SANDBOX_KEY) as sandbox:
        yield sandbox


@pytest.fixture
def sandbox(sandbox_process: SandboxProcess) -> SandboxProcess:
    """The session's sandbox, emptied for this test."""
    sandbox_process.reset()
    return sandbox_process


@pytest.fixture(scope="session")
def postgres_url() -> str:
    """PostgreSQL for integration tests: skipped locally without it, a failure in CI."""
    if not postgres_available():
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI but not reachable at {POSTGRES_URL}")
        pytest.skip("PostgreSQL not reachable")
    return POSTGRES_URL


@pytest.fixture
def duckdb_url(tmp_path: Path) -> str:
    return f"duckdb:///{tmp_path / 'warehouse.duckdb'}"


@pytest.fixture
def pg_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name in PostgreSQL, dropped (with a matching state schema) afterwards."""
    name = f"t_{uuid.uuid4().hex[:10]}"
    yield name
    drop_schemas(postgres_url, name, f"{name}_state")


@pytest.fixture(params=["duckdb", "postgres"])
def warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(warehouse URL, source schema) on each real backend."""
    if request.param == "duckdb":
        yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}", "segment"
    else:
        url = request.getfixturevalue("postgres_url")
        yield url, request.getfixturevalue("pg_schema")


#: The test files that take longest, started first: on parallel workers (a file each,
#: README) the suite then does not wait on one of them at its end.
SLOW_FILES_FIRST = (
    "test_partitions.py",
    "test_buckets.py",
    "test_crash.py",
    "test_partitions_cli.py",
    "test_first_day.py",
    "test_cli.py",
    "test_prefect.py",
    "test_10_run_status.py",
    "test_05_secrets.py",
    "test_bigquery.py",
    "test_delivery_faults.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(SLOW_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable otherwise
