"""The CLI end to end, as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from warehouse.demo import build_demo_warehouse


def run_cli(*args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300):
    full_env = {
        k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))
    }
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "connect_sync", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_demo_runs_twice_in_a_row(tmp_path: Path) -> None:
    for _ in range(2):
        result = run_cli("demo", "--users", "200", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Events page: http://127.0.0.1:" in result.stdout
        assert "Traceback" not in result.stderr


def test_wrong_api_key_exits_2_with_one_line_and_marks_nothing(tmp_path: Path, sandbox) -> None:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=50)
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}",
        "CONNECT_API_URL": sandbox.api_url,
        "CONNECT_API_KEY": "not-the-key",
    }
    result = run_cli("sync", cwd=tmp_path, env=env)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    assert "401" in result.stderr and "CONNECT_API_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
        delivered = conn.execute(sa.text("SELECT count(*) FROM connect_sync.delivered")).scalar()
        prints = conn.execute(
            sa.text("SELECT count(*) FROM connect_sync.user_fingerprints")
        ).scalar()
        cursors = conn.execute(sa.text("SELECT count(*) FROM connect_sync.cursors")).scalar()
    assert delivered == prints == cursors == 0
    assert sandbox.stats()["users"] == 0


def test_missing_warehouse_exits_2(tmp_path: Path) -> None:
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'nope.duckdb'}",
        "CONNECT_API_KEY": "k",
    }
    result = run_cli("sync", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "does not exist" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_api_key_exits_2(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=10)
    result = run_cli("sync", cwd=tmp_path, env={"CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}"})
    assert result.returncode == 2
    assert "CONNECT_API_KEY" in result.stderr
