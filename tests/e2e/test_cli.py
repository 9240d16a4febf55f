"""The CLI end to end, as a user runs it: exit codes, messages, no tracebacks."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
import time
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


#: stream, sent, unchanged, rejected (and undelivered) in the report table
REPORT_ROW = re.compile(r"^\W*(\w+)\W+([\d,]+)\W+([\d,]+)\W+([\d,]+)(?:\W+[\d,]+)?\W*$")
TRACK_STREAMS = ("events", "pages", "screens")  # each sent item is one stored event
IDENTIFY_STREAMS = ("merges", "users", "groups")  # each sent item is one identify


def sent_by_stream(stdout: str) -> dict[str, int]:
    """The report table's `sent` column, per stream label."""
    rows = (REPORT_ROW.match(line) for line in stdout.splitlines())
    return {m[1]: int(m[2].replace(",", "")) for m in rows if m}


def test_demo_runs_twice_in_a_row_and_delivers_what_it_reports(tmp_path: Path) -> None:
    """What the demo promises: exit 0, the sandbox holding the users and events the report
    says were sent, no duplicates, and the Events page listing the event names."""
    from connect_sync.connect.sandbox.server import start_sandbox_process

    for _ in range(2):
        result = run_cli("demo", "--users", "200", cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Events page: http://127.0.0.1:" in result.stdout
        assert "Traceback" not in result.stderr
        sent = sent_by_stream(result.stdout)
        assert set(TRACK_STREAMS + IDENTIFY_STREAMS) <= set(sent), result.stdout
        assert sent["events"] > 0 and sent["users"] > 0

        database = tmp_path / ".connect-sync" / "sandbox.sqlite"
        with start_sandbox_process("k", extra_args=["--db", str(database)]) as sandbox:
            stats = sandbox.stats()
            names = sandbox.http.get("/_sandbox/event_names").raise_for_status().json()
            page = sandbox.http.get("/").raise_for_status().text
            stored = {e["event"] for e in sandbox.events()}
        assert stats["events"] == stats["track_items"] == sum(sent[s] for s in TRACK_STREAMS)
        assert stats["identify_items"] == sum(sent[s] for s in IDENTIFY_STREAMS)
        assert stats["users"] >= sent["users"]
        assert stats["duplicate_events"] == stats["rejected_items"] == 0
        assert f"sandbox: {stats['users']} users, {stats['events']} events, 0 duplicates" in (
            " ".join(result.stdout.split())
        )
        listed = {html.unescape(n) for n in re.findall(r"data-event='([^']*)'", page)}
        assert listed == stored == {n["event"] for n in names}
        assert sum(n["total"] for n in names) == stats["events"]
        warehouse = sa.create_engine(f"duckdb:///{tmp_path / '.connect-sync' / 'demo.duckdb'}")
        with warehouse.connect() as conn:
            tracked = conn.execute(
                sa.text(
                    "SELECT DISTINCT coalesce(event_text, event) AS name FROM segment.tracks"
                    " WHERE length(coalesce(event_text, event)) <= 200"
                    " AND coalesce(user_id, anonymous_id) IS NOT NULL"
                )
            ).scalars()
            tracked = set(tracked)
        warehouse.dispose()
        assert tracked and tracked <= listed


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
    with engine.connect() as conn:  # refused before any state was written, or even created
        books = sa.inspect(conn).get_table_names(schema="connect_sync")
        counts = [
            conn.execute(sa.text(f"SELECT count(*) FROM connect_sync.{table}")).scalar()
            for table in ("delivered", "user_fingerprints", "cursors")
            if table in books
        ]
    assert not any(counts)
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


def test_unreachable_api_fails_in_seconds_before_reading_the_warehouse(tmp_path: Path) -> None:
    """Connect is checked before any row is read: one line, exit 2, no run of retries and
    no rejections recorded for a destination that was never there."""
    path = tmp_path / "w.duckdb"
    build_demo_warehouse(path, users=50)
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}",
        "CONNECT_API_URL": "http://127.0.0.1:1/v2",
        "CONNECT_API_KEY": "k",
    }
    started = time.monotonic()
    result = run_cli("sync", cwd=tmp_path, env=env)

    assert result.returncode == 2, result.stdout + result.stderr
    assert time.monotonic() - started < 30  # the whole process, start-up included
    assert len(result.stderr.strip().splitlines()) == 1 and "127.0.0.1:1" in result.stderr
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
        assert "connect_sync" not in sa.inspect(conn).get_schema_names()
    engine.dispose()
