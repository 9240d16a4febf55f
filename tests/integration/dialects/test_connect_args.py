"""The warehouse connect-arguments setting: JSON or a file, handed to the driver, never
printed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.engine import create_engine
from pydantic import ValidationError

from connect_sync.settings import Settings


def test_connect_args_come_from_json_or_a_file(tmp_path) -> None:
    args = {"private_key_file": "/secrets/key.p8", "private_key_file_pwd": "hunter2"}
    path = tmp_path / "args.json"
    path.write_text(json.dumps(args))
    assert Settings(warehouse_connect_args=json.dumps(args)).warehouse_connect_args_value() == args
    assert Settings(warehouse_connect_args=str(path)).warehouse_connect_args_value() == args
    assert "hunter2" not in repr(Settings(warehouse_connect_args=json.dumps(args)))


@pytest.mark.parametrize("value", ['{"password": "hunter2"', '["hunter2"]', "/no/such/hunter2"])
def test_bad_connect_args_are_refused_without_showing_them(value) -> None:
    with pytest.raises(ValidationError) as info:
        Settings(warehouse_connect_args=value)
    assert "hunter2" not in str(info.value).replace(repr(value), "")


def test_the_cli_exits_2_on_bad_connect_args_without_printing_them(tmp_path) -> None:
    env = {**os.environ, "CONNECT_SYNC_WAREHOUSE_CONNECT_ARGS": '{"password": "hunter2"'}
    result = subprocess.run(
        [sys.executable, "-m", "connect_sync", "sync", "--dry-run"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert "hunter2" not in result.stderr + result.stdout
    assert len(result.stderr.strip().splitlines()) == 1


def test_the_configured_warehouse_gets_its_connect_args(tmp_path, monkeypatch) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    monkeypatch.setenv("CONNECT_SYNC_WAREHOUSE_URL", url)
    monkeypatch.setenv("CONNECT_SYNC_WAREHOUSE_CONNECT_ARGS", '{"config": {"threads": 3}}')
    settings = Settings()  # from the environment, as the job reads it
    engine = create_engine(url, create_dirs=True, connect_args=settings.engine_args(url))
    with engine.connect() as conn:
        threads = conn.execute(sa.text("SELECT current_setting('threads')")).scalar()
    assert int(threads) == 3
    other_url = f"duckdb:///{tmp_path / 'other.duckdb'}"
    other = create_engine(other_url, create_dirs=True, connect_args=settings.engine_args(other_url))
    with other.connect() as conn:  # another URL (a separate state store) gets none
        assert conn.execute(sa.text("SELECT 1")).scalar() == 1
