"""What a command loads before it does any work: `connect-sync --help` loads no data
library, and the sync path leaves the compiled kernels (numba), the graph library
(scipy), the SQL parser (sqlglot) and DuckDB until a run uses them. Checked in a fresh
interpreter by which modules are loaded, not by timing (benchmarks/startup.py times it)."""

from __future__ import annotations

import subprocess
import sys

import pytest

DATA = ("pandas", "numpy", "pyarrow", "polars", "sqlalchemy", "httpx", "prefect")
DEFERRED = ("numba", "llvmlite", "scipy", "sqlglot", "duckdb", "prefect", "dask")


def loaded_after(statement: str, candidates: tuple[str, ...]) -> list[str]:
    """Which of `candidates` a fresh interpreter has loaded after running `statement`."""
    probe = (
        f"{statement}\nimport sys\nprint(' '.join(m for m in {candidates!r} if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    return done.stdout.split()


def test_the_cli_loads_no_data_library_before_a_command_runs() -> None:
    assert loaded_after("import connect_sync.cli", DATA) == []


@pytest.mark.parametrize("module", ["connect_sync.flows.pipeline", "connect_sync.flows.streams"])
def test_the_sync_path_defers_kernels_graphs_parser_and_duckdb(module: str) -> None:
    assert loaded_after(f"import {module}", DEFERRED) == []
