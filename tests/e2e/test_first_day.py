"""A user's first day: books per destination, reset, counts that agree, hints that help."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from connect_sync.connect.sandbox.server import start_sandbox_process
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.flows.report import RunReport, short_reason
from connect_sync.warehouse.destinations import BOOK_TABLES
from connect_sync.warehouse.journal import journal_directory
from connect_sync.warehouse.state import StateStore
from rich.console import Console

from connect_sync import cli
from tests.e2e.test_cli import run_cli
from tests.segment_rows import row, sandbox_settings, write_tables

PEOPLE = 3


def _people(url: str, schema: str, *, bad_events: int = 0) -> None:
    """PEOPLE users with one identify and one track each, plus `bad_events` tracks whose
    event name is too long (rejected rows)."""
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(i, user_id=f"u{i}", email=f"u{i}@example.com") for i in range(PEOPLE)
            ],
            "tracks": [
                row(i, user_id=f"u{i}", event="signed_up", event_text="Signed Up")
                for i in range(PEOPLE)
            ]
            + [
                row(10 + i, user_id="u0", event="x" * 201, event_text="x" * 201)
                for i in range(bad_events)
            ],
        },
    )


def _store(settings, key: str | None = None) -> StateStore:
    engine = sa.create_engine(settings.effective_state_url)
    return StateStore(engine, settings.state_schema, key or settings.books_key)


def _rows_under(settings, key: str) -> int:
    store = _store(settings, key)
    total = 0
    with store.engine.connect() as conn:
        for name in BOOK_TABLES:
            table = store.table(name)
            query = sa.select(sa.func.count()).where(table.c.source_schema == key)
            total += conn.execute(query).scalar()
    store.engine.dispose()
    return total


# -- #18.3 books per (source, destination) ---------------------------------------------------


def test_a_second_destination_gets_everything_and_the_first_keeps_its_books(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    _people(url, schema)
    first = sandbox_settings(url, schema, sandbox, journal_dir=tmp_path / "journal")
    report = run_sync(first)
    assert (report.users_sent, report.events_sent) == (PEOPLE, PEOPLE)

    with start_sandbox_process("another-key") as other:
        second = sandbox_settings(url, schema, other, journal_dir=tmp_path / "journal")
        assert second.books_key != first.books_key
        assert "another-key" not in second.books_key  # a hash, never the key
        report = run_sync(second)
        assert (report.users_sent, report.events_sent) == (PEOPLE, PEOPLE)
        assert other.stats()["users"] == PEOPLE

    again = run_sync(first)
    assert (again.users_sent, again.events_sent) == (0, 0)
    assert again.events_already_delivered == PEOPLE


def test_legacy_books_are_adopted_by_the_first_destination_only(
    warehouse, sandbox, tmp_path: Path
) -> None:
    url, schema = warehouse
    _people(url, schema)
    first = sandbox_settings(url, schema, sandbox, journal_dir=tmp_path / "journal")
    run_sync(first)
    # What an earlier release wrote: every book under the plain source schema.
    store = _store(first)
    with store.engine.begin() as conn:
        for name in (*BOOK_TABLES, "runs"):
            table = store.table(name)
            conn.execute(sa.update(table).values(source_schema=schema))
    store.engine.dispose()
    legacy_journal = journal_directory(
        first.effective_state_url, first.state_schema, schema, first.journal_dir
    )
    legacy_journal.mkdir(parents=True, exist_ok=True)
    (legacy_journal / "marker").write_text("legacy")
    current_journal = journal_directory(
        first.effective_state_url, first.state_schema, first.books_key, first.journal_dir
    )
    import shutil

    shutil.rmtree(current_journal, ignore_errors=True)

    preview = run_sync(first, SyncOptions(dry_run=True))  # reads them, adopts nothing
    assert (preview.users_sent, preview.events_sent) == (0, 0)
    assert _rows_under(first, first.books_key) == 0

    adopted = run_sync(first)
    assert (adopted.users_sent, adopted.events_sent) == (0, 0)
    assert _rows_under(first, schema) == 0
    assert _rows_under(first, first.books_key) > 0
    assert (current_journal / "marker").read_text() == "legacy"

    with start_sandbox_process("another-key") as other:
        report = run_sync(sandbox_settings(url, schema, other, journal_dir=tmp_path / "j2"))
        assert (report.users_sent, report.events_sent) == (PEOPLE, PEOPLE)


def _env(path: Path, sandbox, **extra: str) -> dict[str, str]:
    return {
        "CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}",
        "CONNECT_API_URL": sandbox.api_url,
        "CONNECT_API_KEY": sandbox.api_key,
        "CONNECT_SYNC_JOURNAL_DIR": str(path.parent / "journal"),
        **extra,
    }


def test_reset_asks_then_forgets_this_destination_only(sandbox, tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _people(f"duckdb:///{path}", "segment")
    env = _env(path, sandbox)
    assert run_cli("sync", cwd=tmp_path, env=env).returncode == 0

    refused = run_cli("reset", cwd=tmp_path, env=env, input="n\n")
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "nothing forgotten" in refused.stderr
    assert "Traceback" not in refused.stderr

    done = run_cli("reset", "--yes", cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "reset segment" in done.stdout

    again = run_cli("sync", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sandbox.stats()["duplicate_events"] == PEOPLE  # every event sent a second time


# -- #18.6 counts that agree -------------------------------------------------------------------


def test_report_progress_status_and_rejects_list_agree(sandbox, tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _people(f"duckdb:///{path}", "segment", bad_events=2)
    settings = sandbox_settings(
        f"duckdb:///{path}", "segment", sandbox, journal_dir=tmp_path / "journal", max_retries=0
    )
    sandbox.set_faults(error_rate=1.0)
    seen: dict[str, tuple[int, int, dict]] = {}

    def progress(stream, done, total, stats, **extra) -> None:
        seen[stream] = (done, total, cli._progress_fields(done, stats, extra))

    try:
        report = run_sync(settings, progress=progress)
    finally:
        sandbox.set_faults(error_rate=0.0)

    events = report.streams["events"]
    assert events.rejected == 2  # the bad rows
    assert events.undelivered == PEOPLE  # answered 500: retryable
    done, total, fields = seen["events"]
    assert done == total == PEOPLE + 2
    assert fields["rejected"] == 2 and fields["undelivered"] == PEOPLE
    store = _store(settings)
    retryable = store.rejections(retryable_only=True)
    store.engine.dispose()
    assert sum(report.streams[s].undelivered for s in report.streams) == len(retryable)

    env = _env(path, sandbox, CONNECT_SYNC_STATE_SCHEMA=settings.state_schema)
    listed = run_cli("rejects", "list", "--retryable", cwd=tmp_path, env=env)
    assert f"rejections ({len(retryable)})" in listed.stdout
    assert "nan" not in listed.stdout
    status = run_cli("status", cwd=tmp_path, env=env)
    assert status.returncode == 0, status.stderr
    assert f"(destination {settings.destination_id})" in status.stdout  # shown, not eaten
    assert "pending rejections" in status.stdout
    assert re.search(r"events\s*│\s*HTTP 50\d\s*│\s*yes\s*│\s*3", status.stdout), status.stdout
    assert re.search(r"events\s*│\s*event_name_too_long\s*│\s*no\s*│\s*2", status.stdout)

    replay = run_cli("rejects", "replay", cwd=tmp_path, env=env)
    assert replay.returncode == 0, replay.stdout + replay.stderr
    status = run_cli("status", cwd=tmp_path, env=env)
    assert "replayed" in status.stdout and "-/-" not in status.stdout


def test_an_audience_run_counts_only_the_audience(sandbox, tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    url = f"duckdb:///{path}"
    _people(url, "segment")
    settings = sandbox_settings(url, "segment", sandbox, journal_dir=tmp_path / "journal")
    run_sync(settings)
    audience = tmp_path / "one.sql"
    audience.write_text("SELECT user_id FROM {schema}.identifies WHERE user_id = 'u1'")

    report = run_sync(settings, SyncOptions(audience=str(audience)))

    assert report.events_already_delivered == 1
    assert report.events_read == 1


def test_short_reasons() -> None:
    assert short_reason("HTTP 400: event name too long (after 2 retries)") == "HTTP 400"
    assert short_reason("missing_user_id") == "missing_user_id"
    assert len(short_reason("x" * 300)) == 40


# -- #18.13 the report fits 80 columns ---------------------------------------------------------


def test_the_report_fits_80_columns(monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(cli, "console", Console(file=out, width=80, color_system=None))
    report = RunReport(run_id="r" * 32, status="succeeded", duration_s=210.5)
    for name in ("aliases", "users", "groups", "events", "pages", "screens"):
        counts = report.stream(name)
        counts.sent, counts.unchanged, counts.rejected = 1_234_567, 12_345_678, 3_035
        counts.undelivered = 1_234_567
    report.requests, report.retries = 123_456, 7_890

    cli._print_report(report)

    text = out.getvalue()
    assert "…" not in text
    assert text.count("12,345,678") == 6 and text.count("3,035") == 6
    assert "requests: 123,456" in text and "identity conflicts: 0" in text  # never split


# -- #18.11 progress without a terminal ---------------------------------------------------------


def test_progress_lines_when_output_is_not_a_terminal(sandbox, tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _people(f"duckdb:///{path}", "segment")
    result = run_cli("sync", cwd=tmp_path, env=_env(path, sandbox))
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if re.match(r"\d\d:\d\d:\d\d ", line)]
    assert any(f"events: {PEOPLE}/{PEOPLE} sent {PEOPLE}" in line for line in lines), lines
    assert any(f"users: {PEOPLE}/{PEOPLE}" in line for line in lines), lines
    assert result.stdout.index(lines[-1]) < result.stdout.index("run ")


# -- #18.7 hints ---------------------------------------------------------------------------------


def test_status_before_the_first_sync_names_the_state_setting(tmp_path: Path) -> None:
    env = {"CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{tmp_path / 'fresh.duckdb'}"}
    result = run_cli("status", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert "no sync state yet" in result.stderr and "CONNECT_SYNC_STATE_URL" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize(
    ("url", "wanted", "unwanted"),
    [
        ("postgres://postgres@127.0.0.1/test", "postgresql+psycopg://", "pip install"),
        ("mysql://root@127.0.0.1/db", "not a supported warehouse", "[mysql]"),
    ],
)
def test_url_scheme_hints(tmp_path: Path, url: str, wanted: str, unwanted: str) -> None:
    result = run_cli("sync", "--dry-run", cwd=tmp_path, env={"CONNECT_SYNC_WAREHOUSE_URL": url})
    assert result.returncode == 2
    assert wanted in result.stderr and unwanted not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_missing_database_is_not_called_a_missing_schema(postgres_url, tmp_path: Path) -> None:
    url = postgres_url.rsplit("/", 1)[0] + "/no_such_database_here"
    result = run_cli("sync", "--dry-run", cwd=tmp_path, env={"CONNECT_SYNC_WAREHOUSE_URL": url})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "database" in result.stderr and "does not exist" in result.stderr
    assert "schema" not in result.stderr


# -- #18.8 backfill times ----------------------------------------------------------------------


def test_backfill_takes_iso_times_with_a_zone_and_says_naive_is_utc(tmp_path: Path) -> None:
    path = tmp_path / "w.duckdb"
    _people(f"duckdb:///{path}", "segment")
    env = {"CONNECT_SYNC_WAREHOUSE_URL": f"duckdb:///{path}"}
    for start in ("2026-10-01T00:00:00Z", "2026-10-01", "2026-10-01T02:00:00+02:00"):
        result = run_cli(
            "backfill", "--start", start, "--end", "2026-10-02", "--dry-run", cwd=tmp_path, env=env
        )
        assert result.returncode == 0, result.stdout + result.stderr
    bad = run_cli("backfill", "--start", "yesterday", "--end", "2026-10-02", cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "not a date or time" in bad.stderr
    assert "UTC" in run_cli("backfill", "--help", cwd=tmp_path).stdout


# -- #18.9 the demo's sandbox ------------------------------------------------------------------


def test_demo_without_serve_points_at_a_server_it_says_how_to_start(tmp_path: Path) -> None:
    result = run_cli("demo", "--users", "20", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    line = next(li for li in result.stdout.splitlines() if li.startswith("Events page:"))
    assert "http://127.0.0.1:8765/" in line and "connect-sync sandbox --db" in line


def test_demo_serve_stopped_by_sigterm_stops_its_sandbox(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    process = subprocess.Popen(
        [sys.executable, "-m", "connect_sync", "demo", "--users", "20", "--serve"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    url = None
    for line in process.stdout:
        if line.startswith("Events page:"):
            url = line.split()[-1]
        if line.startswith("serving"):
            break
    assert url and url.startswith("http://127.0.0.1:")
    assert httpx.get(url, timeout=5).status_code == 200

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=30) is not None
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=2)


# -- #18.14 a bad key from a Prefect Secret block ---------------------------------------------


@pytest.fixture(scope="module")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_a_bad_secret_block_key_names_the_block_and_leaves_an_artifact(
    prefect_harness, sandbox, tmp_path: Path, monkeypatch
) -> None:
    from connect_sync.connect.errors import AuthenticationError
    from connect_sync.flows.sync import sync
    from prefect.artifacts import Artifact
    from prefect.blocks.system import Secret

    path = tmp_path / "w.duckdb"
    _people(f"duckdb:///{path}", "segment")
    monkeypatch.setenv("CONNECT_SYNC_WAREHOUSE_URL", f"duckdb:///{path}")
    monkeypatch.setenv("CONNECT_API_URL", sandbox.api_url)
    monkeypatch.setenv("CONNECT_SYNC_JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.delenv("CONNECT_API_KEY", raising=False)
    Secret(value="not-the-key").save("connect-wrong-key", overwrite=True)

    with pytest.raises(AuthenticationError) as raised:
        sync(source_schema="segment", api_key_secret="connect-wrong-key")

    assert "Secret block 'connect-wrong-key'" in str(raised.value)
    assert "CONNECT_API_KEY" not in str(raised.value)
    artifact = Artifact.get("connect-sync-segment")
    assert artifact is not None and "failed" in (artifact.description or "")
    assert "connect-wrong-key" in (artifact.description or "")


# -- #18.10 what `pip install .` installs --------------------------------------------------------


def test_the_wheel_lists_every_package_of_the_tree() -> None:
    """A non-editable install ships only the packages pyproject lists: every folder with an
    __init__.py under a mapped folder must be one (connect_sync.flows.streams was not)."""
    import tomllib

    root = Path(__file__).resolve().parents[2]
    setup = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(setup["packages"])
    for package, folder in setup["package-dir"].items():
        for init in (root / folder).rglob("__init__.py"):
            parts = init.parent.relative_to(root / folder).parts
            assert ".".join((package, *parts)) in listed, init
