"""Bounded memory at any warehouse size (issue #16): the warehouse is opened read-only when
the state lives elsewhere, and the users stream reads its rows bucket by bucket."""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connect_sync.settings import Settings
from tests.segment_rows import drop_schemas, row, sandbox_settings, write_tables


def _tables() -> dict[str, list[dict]]:
    return {
        "identifies": [
            row(0, anonymous_id="a1", email="ann@example.com"),
            row(1, anonymous_id="a1", user_id="u1", first_name="Ann"),
            row(2, user_id="u2", email="bob@example.com"),
        ],
        "tracks": [row(3, user_id="u1", event="Signed Up", event_text="Signed Up")],
        "aliases": [],
    }


@pytest.fixture
def held_read_only(tmp_path: Path):
    """A DuckDB warehouse file, held open read-only by another process (a BI tool, dbt,
    another partition) for as long as the test runs."""
    path = tmp_path / "warehouse.duckdb"
    write_tables(f"duckdb:///{path}", "segment", _tables())
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, duckdb
                con = duckdb.connect({str(path)!r}, read_only=True)
                con.execute("SELECT count(*) FROM segment.identifies").fetchall()
                print("holding", flush=True)
                sys.stdin.read()
                """
            ),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "holding"
        yield path
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_sync_reads_a_duckdb_file_another_process_holds_read_only(
    held_read_only: Path, tmp_path: Path, sandbox
) -> None:
    url = f"duckdb:///{held_read_only}"
    state = f"duckdb:///{tmp_path / 'state.duckdb'}"
    out = tmp_path / "out.jsonl"
    dry = run_sync(
        Settings(warehouse_url=url, state_url=state, journal_dir=tmp_path / "j1"),
        SyncOptions(dry_run=True, output=out),
    )
    assert dry.status == "succeeded", dry.error
    assert dry.users_sent == 2 and len(out.read_text().splitlines()) >= 3
    settings = sandbox_settings(url, "segment", sandbox, state_url=state, journal_dir=tmp_path)
    real = run_sync(settings, SyncOptions())
    assert real.status == "succeeded", real.error
    assert (real.users_sent, real.events_sent) == (2, 1)


def test_a_read_only_warehouse_engine_cannot_write(warehouse: tuple[str, str]) -> None:
    url, schema = warehouse
    write_tables(url, schema, _tables())
    engine = create_engine(url, read_only=True)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text(f'SELECT count(*) FROM "{schema}".identifies')).scalar()
        with pytest.raises(sa.exc.DBAPIError), engine.begin() as conn:
            conn.execute(sa.text(f'CREATE TABLE "{schema}".written (x INTEGER)'))
    finally:
        engine.dispose()


# -- the users stream in buckets ---------------------------------------------------------

USERS = [f"u{i}" for i in range(8)]
ANONYMOUS = [f"a{i}" for i in range(10)]

identify_rows = st.lists(
    st.tuples(
        st.sampled_from([None, *USERS]),  # user id
        st.sampled_from([None, *ANONYMOUS]),  # anonymous id
        st.integers(0, 50),  # minutes
        st.sampled_from([None, "ann@example.com", "bob@example.com", ""]),  # email
        st.sampled_from([None, "Ann", "Bob", "Zoë"]),  # first name
        st.sampled_from([None, 1, 7, 42]),  # plan seats
        st.booleans(),  # a duplicate of the previous row (the same message)
    ),
    min_size=1,
    max_size=25,
)
alias_rows = st.lists(
    st.tuples(st.sampled_from(ANONYMOUS + USERS), st.sampled_from(USERS), st.integers(0, 50)),
    max_size=6,
)


def _warehouse(url: str, schema: str, identifies: list, aliases: list) -> None:
    rows: list[dict] = []
    for user, anonymous, minutes, email, name, seats, again in identifies:
        if again and rows:
            rows.append(dict(rows[-1]))
            continue
        rows.append(
            row(minutes, user_id=user, anonymous_id=anonymous, email=email, first_name=name,
                seats=seats)
        )  # fmt: skip
    links = [row(m, previous_id=p, user_id=u) for p, u, m in aliases]
    write_tables(url, schema, {"identifies": rows, "aliases": links})


def _dry_users(
    url: str, schema: str, tmp: Path, name: str, audience: str | None = None, **settings: object
) -> bytes:
    out = tmp / f"{name}.jsonl"
    report = run_sync(
        Settings(
            warehouse_url=url,
            source_schema=schema,
            state_url=f"duckdb:///{tmp / f'{name}-state.duckdb'}",
            journal_dir=tmp / f"{name}-journal",
            **settings,
        ),
        SyncOptions(streams=("aliases", "users"), dry_run=True, output=out, audience=audience),
    )
    assert report.status == "succeeded", report.error
    return out.read_bytes()


def _same_payloads_bucketed_or_not(url: str, schema: str, tmp: Path) -> None:
    whole = _dry_users(url, schema, tmp, "whole", bucket_rows=10**9, chunk_size=3)
    assert b"/v2/identify" in whole or whole == b""
    for rows in (1, 2, 5):
        bucketed = _dry_users(url, schema, tmp, f"b{rows}", bucket_rows=rows, chunk_size=3)
        assert bucketed == whole, rows
    # an audience (the users any of whose ids once said first_name Ann) in buckets too
    audience = tmp / "anns.sql"
    audience.write_text(
        "SELECT user_id FROM {schema}.identifies WHERE first_name = 'Ann'\n"
        "UNION SELECT anonymous_id FROM {schema}.identifies WHERE first_name = 'Ann'\n"
    )
    whole = _dry_users(url, schema, tmp, "aw", str(audience), bucket_rows=10**9, chunk_size=3)
    bucketed = _dry_users(url, schema, tmp, "ab", str(audience), bucket_rows=2, chunk_size=3)
    assert bucketed == whole


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identifies=identify_rows, aliases=alias_rows)
def test_bucketed_and_whole_users_runs_send_the_same_payloads_duckdb(
    identifies: list, aliases: list
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        url = f"duckdb:///{tmp / 'warehouse.duckdb'}"
        _warehouse(url, "segment", identifies, aliases)
        _same_payloads_bucketed_or_not(url, "segment", tmp)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identifies=identify_rows, aliases=alias_rows)
def test_bucketed_and_whole_users_runs_send_the_same_payloads_postgres(
    postgres_url: str, identifies: list, aliases: list
) -> None:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            _warehouse(postgres_url, schema, identifies, aliases)
            _same_payloads_bucketed_or_not(postgres_url, schema, Path(folder))
    finally:
        drop_schemas(postgres_url, schema)


def test_ids_of_one_user_sorting_into_other_buckets_are_read_with_it(tmp_path: Path) -> None:
    """An anonymous id and the user it is aliased to, in different buckets of ids before
    the merge, are read together: their canonical user's bucket holds both ids."""
    url = f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    identifies = [row(i, anonymous_id=f"z{i}", email=f"z{i}@example.com") for i in range(6)]
    identifies += [row(10, user_id="a-user", first_name="Ann")]
    aliases = [row(11, previous_id="z5", user_id="a-user")]
    write_tables(url, "segment", {"identifies": identifies, "aliases": aliases})
    whole = _dry_users(url, "segment", tmp_path, "whole", bucket_rows=10**9)
    bucketed = _dry_users(url, "segment", tmp_path, "bucketed", bucket_rows=1)
    assert bucketed == whole
    merged = [line for line in whole.splitlines() if b'"a-user"' in line and b"Ann" in line]
    assert len(merged) == 1 and b"z5@example.com" in merged[0]
