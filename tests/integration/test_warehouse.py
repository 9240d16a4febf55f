"""Reading real warehouses (DuckDB and PostgreSQL): native Arrow paths and the plain
SQLAlchemy path give the same frames; reads stream; event tables, late columns and
duplicates; clear errors."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from datetime import timedelta

import orjson
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.transforms.columns import custom_columns, identify_read_columns
from connect_sync.transforms.events import property_objects
from connect_sync.warehouse import frames as frames_module
from connect_sync.warehouse import segment as segment_module
from connect_sync.warehouse.engine import release_file_database
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.frames import iter_frames, native_path, read_frame
from connect_sync.warehouse.segment import SegmentSource, Window

from connect_sync import sql
from tests.segment_rows import T0, at, row, write_tables

EXPECTED_TYPES = {
    "id": pa.string(),
    "user_id": pa.string(),
    "anonymous_id": pa.string(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "uuid_ts": pa.timestamp("us", tz="UTC"),
    "logins": pa.int64(),
    "score": pa.float64(),
    "is_vip": pa.bool_(),
    "plan": pa.string(),
}


def _identifies(n: int = 7) -> list[dict]:
    rows = []
    for i in range(n):
        rows.append(
            row(
                i,
                user_id=f"u{i % 3}" if i % 4 else None,
                anonymous_id=f"a{i}",
                logins=i * 10 if i % 2 == 0 else None,
                score=i / 4 if i % 3 != 1 else None,
                is_vip=bool(i % 2) if i % 5 != 1 else None,
                plan="pro" if i % 2 == 0 else None,
                context_ip="10.0.0.1",
                context_timezone="Europe/Berlin",
                sent_at=at(i),
            )
        )
    return rows


def _engine(url: str) -> sa.Engine:
    return sa.create_engine(url)


IDENTIFIES_DDL = """
CREATE TABLE {schema}.identifies (
    id VARCHAR, anonymous_id VARCHAR, user_id VARCHAR,
    received_at TIMESTAMP WITH TIME ZONE, sent_at TIMESTAMP WITH TIME ZONE,
    original_timestamp TIMESTAMP WITH TIME ZONE, {ts} TIMESTAMP WITH TIME ZONE,
    uuid_ts TIMESTAMP WITH TIME ZONE, logins BIGINT, score DOUBLE PRECISION,
    is_vip BOOLEAN, plan VARCHAR, context_ip VARCHAR, context_timezone VARCHAR
)
"""


def _write_identifies(url: str, schema: str, n: int = 7) -> None:
    """Segment-typed identifies (BIGINT stays BIGINT with nulls), then the rows."""
    engine = _engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        conn.execute(sql.render_text(IDENTIFIES_DDL, engine.dialect, schema=schema, ts="timestamp"))
    engine.dispose()
    write_tables(url, schema, {"identifies": _identifies(n)})


def test_native_and_sqlalchemy_paths_give_identical_frames(warehouse) -> None:
    url, schema = warehouse
    _write_identifies(url, schema)
    engine = _engine(url)
    clause = sql.render_text(
        "SELECT id, user_id, anonymous_id, {ts}, uuid_ts, logins, score, is_vip, plan "
        "FROM {schema}.{table} WHERE uuid_ts >= :since ORDER BY id",
        engine.dialect,
        ts="timestamp",
        schema=schema,
        table="identifies",
    )
    with engine.connect() as conn:
        assert native_path(conn) in ("duckdb", "adbc")
        native = read_frame(conn, clause, {"since": T0 - timedelta(days=1)}, 3)
        plain = read_frame(conn, clause, {"since": T0 - timedelta(days=1)}, 3, native=False)
    engine.dispose()

    assert len(native) == 7
    for frame in (native, plain):
        assert {c: frame[c].dtype for c in frame.columns} == {
            c: pd.ArrowDtype(t) for c, t in EXPECTED_TYPES.items()
        }
    pd.testing.assert_frame_equal(native, plain)
    assert native["logins"].isna().sum() == 3  # ints stay ints through nulls
    assert native["timestamp"].min() == pd.Timestamp(T0)


def test_reads_stream_in_chunks_and_empty_results_keep_their_columns(warehouse) -> None:
    url, schema = warehouse
    _write_identifies(url, schema, 10)
    engine = _engine(url)
    clause = sql.render_text(
        "SELECT id, logins FROM {schema}.{table} WHERE uuid_ts >= :since ORDER BY id",
        engine.dialect,
        schema=schema,
        table="identifies",
    )
    with engine.connect() as conn:
        for native in (True, False):
            frames = list(iter_frames(conn, clause, {"since": T0}, 3, native=native))
            assert [len(f) for f in frames] == [3, 3, 3, 1]
            empty = list(iter_frames(conn, clause, {"since": at(10_000)}, 3, native=native))
            assert len(empty) == 1 and empty[0].empty
            assert list(empty[0].columns) == ["id", "logins"]
    engine.dispose()


def test_source_reads_only_the_columns_the_users_stream_needs(warehouse) -> None:
    url, schema = warehouse
    _write_identifies(url, schema)
    source = SegmentSource(_engine(url), schema, chunk_size=2)
    source.check(["identifies"])

    frame = source.identifies(columns=identify_read_columns(source.columns("identifies")))

    assert len(frame) == 7
    assert "context_ip" not in frame.columns and "sent_at" not in frame.columns
    assert {"id", "user_id", "anonymous_id", "timestamp", "uuid_ts", "context_timezone"} <= set(
        frame.columns
    )
    assert {"logins", "score", "is_vip", "plan"} <= set(frame.columns)
    assert frame["logins"].dtype == pd.ArrowDtype(pa.int64())


def test_identifies_of_ids_are_read_in_id_chunks(warehouse, monkeypatch) -> None:
    url, schema = warehouse
    _write_identifies(url, schema)
    monkeypatch.setattr(segment_module, "ID_CHUNK", 2)
    source = SegmentSource(_engine(url), schema)

    frame = source.identifies(["u1", "a0", "a4", "u2", "nobody", "it's"])

    # rows 1 (u1), 2 and 5 (u2); rows 0 and 4 have no user id and come by anonymous id.
    assert sorted(frame["anonymous_id"]) == ["a0", "a1", "a2", "a4", "a5"]
    assert frame["id"].is_unique


def test_event_tables_missing_late_columns_windows_and_duplicates(warehouse) -> None:
    url, schema = warehouse
    first = row(1, id="m1", user_id="u1", event="signed_up", plan="pro")
    dup = {**first, "uuid_ts": at(2)}  # BigQuery keeps re-delivered rows
    write_tables(
        url,
        schema,
        {
            "tracks": [
                row(1, id="m1", user_id="u1", event="signed_up", event_text="Signed Up"),
                row(50, id="m2", user_id="u1", event="signed_up", event_text="Signed Up"),
            ],
            "signed_up": [first, dup],
        },
    )
    # A property first sent later: Segment adds the column then.
    write_tables(
        url, schema, {"signed_up": [row(50, id="m2", user_id="u1", event="signed_up", seats=3)]}
    )
    source = SegmentSource(_engine(url), schema)
    everything = Window("uuid_ts")

    def properties(table: str, window: Window):
        return source.event_properties(table, window, custom_columns(source.columns(table)))

    assert properties("order_completed", everything) is None
    frame = properties("signed_up", everything)
    assert frame is not None
    assert set(frame.columns) == {"id", "plan", "seats"}  # id and properties only
    assert sorted(frame["id"]) == ["m1", "m1", "m2"]
    props = property_objects(frame)
    assert orjson.loads(props["m1"]) == {"plan": "pro"}
    assert orjson.loads(props["m2"]) == {"seats": 3}

    early = properties("signed_up", Window("uuid_ts", T0, at(10)))
    assert early is not None and set(early["id"]) == {"m1"}


def test_tracks_native_and_plain_sources_agree(warehouse) -> None:
    url, schema = warehouse
    tracks = [
        row(i, user_id=f"u{i}", event="product_viewed", event_text="Product Viewed")
        for i in range(6)
    ]
    write_tables(url, schema, {"tracks": tracks})
    engine = _engine(url)
    native = SegmentSource(engine, schema, chunk_size=4)
    plain = SegmentSource(engine, schema, chunk_size=4, native=False)
    window = Window("uuid_ts", T0, at(100))

    pd.testing.assert_frame_equal(native.tracks(window), plain.tracks(window))
    assert [len(f) for f in native.iter_tracks(window)] == [4, 2]
    assert list(native.tracks(window)["id"]) == [t["id"] for t in tracks]


# -- errors ---------------------------------------------------------------------------------


def test_a_missing_schema_is_named_and_a_missing_table_is_not_an_error(warehouse) -> None:
    url, schema = warehouse
    _write_identifies(url, schema, 1)
    engine = _engine(url)

    with pytest.raises(WarehouseError, match="schema 'nowhere' not found"):
        SegmentSource(engine, "nowhere").check(["identifies"])

    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE "{schema}"."aliases"'))
    source = SegmentSource(engine, schema)
    source.check(["identifies", "aliases", "pages"])  # Segment creates a table on first use
    assert source.has("identifies") and not source.has("aliases")


def test_unreachable_postgres_is_one_clear_error() -> None:
    source = SegmentSource(sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:1/x"), "s")
    with pytest.raises(WarehouseError, match="cannot reach the warehouse"):
        source.check()


def test_missing_permission_names_the_table(postgres_url, pg_schema) -> None:
    _write_identifies(postgres_url, pg_schema, 2)
    role = f"reader_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(postgres_url)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE ROLE "{role}" LOGIN'))
        conn.execute(sa.text(f'GRANT USAGE ON SCHEMA "{pg_schema}" TO "{role}"'))
        conn.execute(sa.text(f'GRANT SELECT ON "{pg_schema}".identifies TO "{role}"'))
    url = sa.engine.make_url(postgres_url).set(username=role)
    engine = sa.create_engine(url)
    try:
        with pytest.raises(WarehouseError, match=rf"no permission to read {pg_schema}\.aliases"):
            SegmentSource(engine, pg_schema).check(["identifies", "aliases"])
        source = SegmentSource(engine, pg_schema)
        with pytest.raises(WarehouseError, match=rf"no permission to read {pg_schema}\.tracks"):
            source.tracks(Window())
        assert len(source.identifies()) == 2  # what is granted reads (ADBC path included)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP OWNED BY "{role}"'))
            conn.execute(sa.text(f'DROP ROLE "{role}"'))
        admin.dispose()


def _sync_cli(env: dict[str, str], tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "connect_sync", "sync", "--dry-run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("unreachable", "cannot reach the warehouse"),
        ("schema", "schema 'nowhere' not found"),
    ],
)
def test_cli_sync_exits_2_with_one_line(case, expected, postgres_url, pg_schema, tmp_path):
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": postgres_url,
        "CONNECT_SYNC_SOURCE_SCHEMA": pg_schema,
        "CONNECT_SYNC_STATE_URL": f"duckdb:///{tmp_path / 'state.duckdb'}",
    }
    if case == "unreachable":
        env["CONNECT_SYNC_WAREHOUSE_URL"] = "postgresql+psycopg://postgres@127.0.0.1:1/test"
    elif case == "schema":
        env["CONNECT_SYNC_SOURCE_SCHEMA"] = "nowhere"
    else:
        write_tables(postgres_url, pg_schema, {})
        engine = sa.create_engine(postgres_url)
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP TABLE "{pg_schema}".identifies'))
        engine.dispose()

    result = _sync_cli(env, tmp_path)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_a_source_without_identifies_or_aliases_still_syncs_its_events(
    postgres_url, pg_schema, tmp_path
) -> None:
    """Segment creates a table on the first call of its kind: a source that never sent an
    identify or an alias has no such table, and its events still sync."""
    write_tables(postgres_url, pg_schema, {"tracks": [row(1, user_id="u1", event="signed_up")]})
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP TABLE "{pg_schema}".identifies'))
        conn.execute(sa.text(f'DROP TABLE "{pg_schema}".aliases'))
    engine.dispose()
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": postgres_url,
        "CONNECT_SYNC_SOURCE_SCHEMA": pg_schema,
        "CONNECT_SYNC_STATE_URL": f"duckdb:///{tmp_path / 'state.duckdb'}",
    }

    result = _sync_cli(env, tmp_path, "--output", str(tmp_path / "out.jsonl"))

    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out.jsonl").read_bytes().splitlines()
    assert [orjson.loads(line)["endpoint"] for line in lines] == ["/v2/track"]


def test_postgres_reads_fall_back_to_sqlalchemy_when_adbc_cannot_connect(
    postgres_url, pg_schema, caplog
) -> None:
    """Credentials or hosts given to SQLAlchemy outside the URL (a `creator`) still read."""
    import psycopg

    _write_identifies(postgres_url, pg_schema, 3)
    real = sa.engine.make_url(postgres_url)
    dsn = real.set(drivername="postgresql").render_as_string(hide_password=False)
    engine = sa.create_engine(real.set(port=1), creator=lambda: psycopg.connect(dsn))
    try:
        frame = SegmentSource(engine, pg_schema).identifies()
    finally:
        engine.dispose()
    assert len(frame) == 3
    assert frame["logins"].dtype == pd.ArrowDtype(pa.int64())
    assert "reading through SQLAlchemy instead" in caplog.text


def test_a_duckdb_file_is_closed_after_each_read_and_reopened_for_the_next(tmp_path) -> None:
    """DuckDB keeps what a read scanned in memory until its last connection closes: the
    source closes a file database's pooled connections after each read (a memory
    database would be lost, so it is left open)."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "seg", {"identifies": _identifies()})
    engine = sa.create_engine(url)
    source = SegmentSource(engine, "seg")
    first = source.identifies()
    assert engine.pool.checkedin() == 0
    assert source.identifies().equals(first)
    memory = sa.create_engine("duckdb:///:memory:")
    with memory.begin() as conn:
        conn.execute(sa.text("CREATE TABLE t AS SELECT 1 AS x"))
    release_file_database(memory)
    with memory.connect() as conn:
        assert conn.execute(sa.text("SELECT x FROM t")).scalar() == 1


def test_a_duckdb_stream_evicts_its_cache_and_restores_the_memory_limit(
    tmp_path, monkeypatch
) -> None:
    """Every EVICT_EVERY_ROWS rows a stream lowers DuckDB's memory limit for a moment
    (evicting the blocks it has scanned) from a second connection: every row still
    arrives, in order, and the limit is the default again afterwards."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "seg", {"identifies": _identifies()})
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        default = conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar()
    whole = SegmentSource(engine, "seg").identifies()
    monkeypatch.setattr(frames_module, "EVICT_EVERY_ROWS", 1)
    streamed = pd.concat(list(SegmentSource(engine, "seg", 2).iter_identifies()))
    pd.testing.assert_frame_equal(streamed.reset_index(drop=True), whole)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar() == default


def test_a_configured_duckdb_memory_limit_survives_a_stream(tmp_path, monkeypatch) -> None:
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "seg", {"identifies": _identifies()})
    engine = sa.create_engine(url, connect_args={"config": {"memory_limit": "3GB"}})
    monkeypatch.setattr(frames_module, "EVICT_EVERY_ROWS", 1)
    assert sum(len(f) for f in SegmentSource(engine, "seg", 2).iter_identifies()) == 7
    with engine.connect() as conn:
        limit = conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar()
    assert limit == "2.7 GiB"  # DuckDB's spelling of 3GB


@pytest.mark.parametrize("setting", [None, "-1"])
def test_streams_of_memory_or_unlimited_databases_leave_the_limit_alone(
    tmp_path, monkeypatch, setting
) -> None:
    """An in-memory database would be pushed out to temporary files by a lower limit,
    and an unlimited one cannot be written back as DuckDB shows it: no eviction there."""
    path = tmp_path / "w.duckdb"
    write_tables(f"duckdb:///{path}", "seg", {"identifies": _identifies()})
    if setting is None:
        engine = sa.create_engine("duckdb:///:memory:", poolclass=sa.pool.StaticPool)
        with engine.begin() as conn:
            conn.execute(sa.text(f"ATTACH '{path}' AS src (READ_ONLY)"))
            conn.execute(sa.text("CREATE SCHEMA seg"))
            conn.execute(sa.text("CREATE TABLE seg.identifies AS FROM src.seg.identifies"))
            conn.execute(sa.text("DETACH src"))
    else:
        engine = sa.create_engine(
            f"duckdb:///{path}", connect_args={"config": {"memory_limit": setting}}
        )
    with engine.connect() as conn:
        before = conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar()
    monkeypatch.setattr(frames_module, "EVICT_EVERY_ROWS", 1)
    assert sum(len(f) for f in SegmentSource(engine, "seg", 2).iter_identifies()) == 7
    with engine.connect() as conn:
        after = conn.execute(sa.text("SELECT current_setting('memory_limit')")).scalar()
    assert after == before


def test_memory_is_released_without_glibc_too(monkeypatch) -> None:
    """Off Linux there is no malloc_trim to call (ctypes.CDLL(None) even raises
    TypeError on Windows): only Arrow's pool is released."""
    from connect_sync.warehouse import engine as engine_module

    engine_module._malloc_trim.cache_clear()
    monkeypatch.setattr(engine_module.sys, "platform", "win32")
    assert engine_module._malloc_trim() is None
    engine_module.release_unused_memory()
    engine_module._malloc_trim.cache_clear()


def test_a_bare_numeric_null_for_a_whole_chunk_reads_alike_on_both_paths(
    postgres_url: str, pg_schema: str
) -> None:
    """PostgreSQL `numeric` without precision: NULL in every row of the first chunk, then
    decimals of several scales. Both readers give every chunk one type (ADBC's numeric
    text), and the values come out exact."""
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{pg_schema}"'))
        conn.execute(sa.text(f'CREATE TABLE "{pg_schema}".t (id int, amount numeric)'))
        conn.execute(
            sa.text(
                f'INSERT INTO "{pg_schema}".t VALUES (1, NULL), (2, NULL), (3, 858.18), '
                "(4, 0.0000001), (5, 12345678901234567890.123456789), (6, 'NaN')"
            )
        )
    clause = sa.text(f'SELECT id, amount FROM "{pg_schema}".t ORDER BY id')
    try:
        with engine.connect() as conn:
            chunks = {
                native: list(iter_frames(conn, clause, {}, 2, native=native))
                for native in (True, False)
            }
    finally:
        engine.dispose()
    for native, frames in chunks.items():
        assert len({str(f["amount"].dtype) for f in frames}) == 1, (native, frames)
        values = pd.concat(frames)["amount"]
        texts = [None if pd.isna(v) else str(v).lower() for v in values]
        assert texts == [None, None, "858.18", "0.0000001", "12345678901234567890.123456789",
                         "nan"], native  # fmt: skip
