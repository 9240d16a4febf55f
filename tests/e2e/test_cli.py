"""The CLI end to end, as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from connect_sync.warehouse.demo import build_demo_warehouse


def run_cli(
    *args: str,
    cwd: Path,
    env: dict[str, str] | None = None,
    timeout: float = 300,
    input: str | None = None,
):
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
        input=input,
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


def test_bad_audience_exits_2_with_a_clear_line(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=20)
    bad = tmp_path / "writes.sql"
    bad.write_text("DELETE FROM {schema}.identifies")
    env = {"CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}"}
    for audience, message in [
        (str(bad), "must be a SELECT query"),
        ("no_such_audience", "no audience named 'no_such_audience'"),
        ("no_such_audience", "or give the path of your own .sql file"),
    ]:
        result = run_cli("sync", "--dry-run", "--audience", audience, cwd=tmp_path, env=env)
        assert result.returncode == 2, result.stderr
        assert message in result.stderr
        assert "Traceback" not in result.stderr


def test_audience_and_backfill_from_the_command_line(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=120)
    env = {"CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}"}
    out = tmp_path / "vip.jsonl"
    result = run_cli(
        "sync", "--dry-run", "--audience", "vip_users", "--output", str(out), cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
        vips = set(
            conn.execute(
                sa.text(
                    "SELECT user_id FROM (SELECT user_id, is_vip, row_number() OVER ("
                    " PARTITION BY user_id ORDER BY timestamp DESC, received_at DESC, id DESC)"
                    " AS r FROM segment.identifies"
                    " WHERE user_id IS NOT NULL AND is_vip IS NOT NULL) WHERE r = 1 AND is_vip"
                )
            ).scalars()
        )
    engine.dispose()
    import orjson

    identified = {
        orjson.loads(line)["body"]["user_id"]
        for line in out.read_bytes().splitlines()
        if orjson.loads(line)["endpoint"] == "/v2/identify"
    }
    assert identified and identified <= vips

    result = run_cli(
        "backfill",
        "--start",
        "2026-10-01",
        "--end",
        "2026-10-05",
        "--dry-run",
        cwd=tmp_path,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    result = run_cli(
        "backfill", "--start", "2026-10-05", "--end", "2026-10-01", cwd=tmp_path, env=env
    )
    assert result.returncode == 2 and "--end must be after --start" in result.stderr
