"""One Segment source, written into any warehouse with that warehouse's declared types,
and the golden and incremental checks every dialect must pass.

A backend gives a `Layout`: the DDL type of each Segment column kind, and a connection to
write with. The same rows go into DuckDB (the reference) and the backend; the job's dry
run must write the same items from both, a real sync must deliver them, a rerun must send
nothing, and one new row of each kind must be exactly what the next run sends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from connect_sync.flows.pipeline import SyncOptions, run_sync

from connect_sync.settings import Settings

T0 = datetime(2026, 11, 1, tzinfo=UTC)
#: Rows per chunk in the checks: a trait NULL for more rows than one chunk, typed later.
CHUNK = 4

#: Segment column kinds: `ts` Segment's event times, `loaded` its load time (uuid_ts).
KINDS = ("text", "ts", "loaded", "bool", "decimal", "int")

COMMON = {
    "id": "text",
    "anonymous_id": "text",
    "user_id": "text",
    "received_at": "ts",
    "sent_at": "ts",
    "original_timestamp": "ts",
    "timestamp": "ts",
    "uuid_ts": "loaded",
}
TABLES: dict[str, dict[str, str]] = {
    "identifies": COMMON
    | {
        "email": "text",
        "plan": "text",
        "beta_tester": "bool",
        "ltv": "decimal",
        "age": "int",
        "is_vip": "bool",
    },
    "aliases": COMMON | {"previous_id": "text"},
    "tracks": COMMON | {"event": "text", "event_text": "text"},
    "order_completed": COMMON
    | {"event": "text", "event_text": "text", "total": "decimal", "coupon": "text"},
}


@dataclass
class Layout:
    """How one warehouse declares Segment's column kinds, and where its rows go."""

    types: dict[str, str]
    #: Extra keyword arguments of the SQLAlchemy insert (none usually).
    create_schema: Callable[[sa.Connection, str], None] | None = None
    quote_names: bool = True
    options: dict[str, Any] = field(default_factory=dict)


DUCKDB = Layout(
    {
        "text": "VARCHAR",
        "ts": "TIMESTAMP WITH TIME ZONE",
        "loaded": "TIMESTAMP WITH TIME ZONE",
        "bool": "BOOLEAN",
        "decimal": "DECIMAL(38, 2)",
        "int": "BIGINT",
    }
)
POSTGRES = Layout(DUCKDB.types | {"decimal": "NUMERIC(38, 2)"})


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def _row(n: int, minutes: float, **values: Any) -> dict[str, Any]:
    ts = at(minutes)
    return {
        "id": f"msg-{n:04d}",
        "anonymous_id": None,
        "user_id": None,
        "received_at": ts,
        "sent_at": ts,
        "original_timestamp": ts,
        "timestamp": ts,
        "uuid_ts": at(minutes + 1),
        **values,
    }


def first_rows() -> dict[str, list[dict[str, Any]]]:
    """The first load: `beta_tester` is NULL for more rows than one chunk, then boolean;
    `ltv` a decimal that a float would not keep as written."""
    identifies = [
        _row(i, i, user_id=f"u{i}", email=f"u{i}@example.com", plan="free", age=20 + i)
        for i in range(CHUNK + 3)
    ]
    identifies[-1] |= {"beta_tester": True, "ltv": Decimal("1234567890123.45")}
    identifies[-2] |= {"beta_tester": False, "ltv": Decimal("0.10")}
    identifies[0] |= {"is_vip": True}  # the shipped vip_users audience selects u0 alone
    identifies[1] |= {"is_vip": False}
    identifies.append(_row(100, 2, anonymous_id="anon-1", plan="trial"))
    aliases = [_row(200, 3, previous_id="anon-1", user_id="u1")]
    tracks = [
        _row(300 + i, 10 + i, user_id=f"u{i % 3}", event="signed_up", event_text="Signed Up")
        for i in range(CHUNK + 2)
    ]
    orders = [
        _row(
            400,
            20,
            user_id="u2",
            event="order_completed",
            event_text="Order Completed",
            total=Decimal("19.99"),
        )
    ]
    tracks.append(
        _row(400, 20, user_id="u2", event="order_completed", event_text="Order Completed")
    )
    return {
        "identifies": identifies,
        "aliases": aliases,
        "tracks": tracks,
        "order_completed": orders,
    }


def new_rows() -> dict[str, list[dict[str, Any]]]:
    """One new row of each kind, loaded after the first run."""
    return {
        "identifies": [
            _row(
                500, 60, user_id="u9", email="u9@example.com", beta_tester=True, ltv=Decimal("5.05")
            )
        ],
        "aliases": [_row(501, 61, previous_id="anon-9", user_id="u9")],
        "tracks": [
            _row(502, 62, user_id="u9", event="order_completed", event_text="Order Completed")
        ],
        "order_completed": [
            _row(
                502,
                62,
                user_id="u9",
                event="order_completed",
                event_text="Order Completed",
                total=Decimal("0.30"),
            )
        ],
    }


def create_tables(conn: sa.Connection, schema: str, layout: Layout) -> None:
    """The Segment tables, declared with the layout's types (names as the dialect writes
    them unquoted: upper case on Snowflake)."""
    quote = conn.dialect.identifier_preparer.quote
    if layout.create_schema:
        layout.create_schema(conn, schema)
    else:
        conn.execute(sa.text(f"CREATE SCHEMA IF NOT EXISTS {quote(schema)}"))
    for table, columns in TABLES.items():
        body = ", ".join(f"{quote(c)} {layout.types[k]}" for c, k in columns.items())
        conn.execute(sa.text(f"CREATE TABLE {quote(schema)}.{quote(table)} ({body})"))


_SA_TYPES = {
    "text": sa.String(),
    "ts": sa.DateTime(timezone=True),
    "loaded": sa.DateTime(timezone=True),
    "bool": sa.Boolean(),
    "decimal": sa.Numeric(38, 2),
    "int": sa.BigInteger(),
}


def insert_rows(conn: sa.Connection, schema: str, rows: dict[str, list[dict[str, Any]]]) -> None:
    for table, values in rows.items():
        columns = TABLES[table]
        target = sa.table(
            table, *(sa.column(c, _SA_TYPES[k]) for c, k in columns.items()), schema=schema
        )
        full = [{c: r.get(c) for c in columns} for r in values]
        if full:
            conn.execute(sa.insert(target), full)


def dry_run(settings: Settings, out: Path) -> tuple[bytes, dict]:
    report = run_sync(settings, SyncOptions(dry_run=True, output=out))
    counts = report.as_dict()
    for volatile in ("duration_s", "run_id", "started", "finished", "source_schema"):
        counts.pop(volatile, None)
    return out.read_bytes(), counts


def duckdb_reference(tmp_path: Path, rows: dict[str, list[dict[str, Any]]]) -> tuple[bytes, dict]:
    """The dry run of these rows from DuckDB: what every dialect must write."""
    url = f"duckdb:///{tmp_path / 'reference.duckdb'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        create_tables(conn, "segment", DUCKDB)
        insert_rows(conn, "segment", rows)
    engine.dispose()
    settings = Settings(
        warehouse_url=url,
        state_url=f"duckdb:///{tmp_path / 'reference-state.duckdb'}",
        source_schema="segment",
        chunk_size=CHUNK,
    )
    return dry_run(settings, tmp_path / "reference.jsonl")


def check_golden_and_incremental(
    settings: Settings,
    write: Callable[[dict[str, list[dict[str, Any]]]], None],
    sandbox: Any,
    tmp_path: Path,
    duplicates: bool = False,
) -> None:
    """The dialect's dry run equals DuckDB's; a real sync delivers it; a rerun sends
    nothing; one new row of each kind is what the next run sends. `duplicates`: the
    backend's tables hold each row twice (the counts of rows read then differ)."""
    write(first_rows())
    expected, expected_counts = duckdb_reference(tmp_path, first_rows())
    # journals and identity caches of this test only (they are keyed by URL otherwise)
    settings = settings.model_copy(update={"journal_dir": tmp_path / "journal"})
    state_free = settings.model_copy(
        update={"state_schema": f"{settings.state_schema}_dry", "journal_dir": tmp_path / "dry"}
    )
    got, counts = dry_run(state_free, tmp_path / "dialect.jsonl")
    assert got == expected, (got[:3000], expected[:3000])
    assert got.count(b"\n") >= 10
    if duplicates:
        for report in (counts, expected_counts):
            for read_twice in ("read", "deduplicated"):
                report.pop(f"events_{read_twice}"), report["streams"]["events"].pop(read_twice)
    differ = {
        k: (v, expected_counts.get(k)) for k, v in counts.items() if expected_counts.get(k) != v
    }
    assert not differ, differ

    first = run_sync(settings, SyncOptions())
    assert first.status == "succeeded", first.as_dict()
    stats = sandbox.stats()
    assert first.events_sent == 7 and stats["events"] == 7
    assert stats["duplicate_events"] == 0 and stats["rejected_items"] == 0
    requests = stats["requests"]

    again = run_sync(settings, SyncOptions())
    assert again.status == "succeeded"
    assert again.events_sent == again.users_sent == again.merges_sent == 0
    assert sandbox.stats()["requests"] == requests

    check_shipped_audiences(settings)

    write(new_rows())
    third = run_sync(settings, SyncOptions())
    assert third.status == "succeeded", third.as_dict()
    assert third.users_sent == 1  # u9 only
    assert third.events_sent == 1
    assert sandbox.stats()["duplicate_events"] == 0


def check_shipped_audiences(settings: Settings) -> None:
    """The audiences shipped in sql/audiences/ run on the dialect, unchanged, and select
    what they select on DuckDB: VIP users by their latest identify, buyers in a window."""
    from connect_sync.warehouse.audience import load_audience
    from connect_sync.warehouse.engine import create_engine

    url = settings.warehouse_url
    engine = create_engine(url, read_only=True, connect_args=settings.engine_args(url))
    schema = settings.source_schema
    try:
        assert load_audience(engine, "vip_users", schema, T0, at(60)) == {"u0"}
        assert load_audience(engine, "recent_buyers", schema, T0, at(60)) == {"u2"}
        assert load_audience(engine, "recent_buyers", schema, at(30), at(60)) == set()
    finally:
        engine.dispose()
