"""Hand-built Segment rows written into a real warehouse (DuckDB or PostgreSQL)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import sqlalchemy as sa

T0 = datetime(2026, 11, 1, tzinfo=UTC)
_counter = itertools.count()

COMMON = [
    "id",
    "anonymous_id",
    "user_id",
    "received_at",
    "sent_at",
    "original_timestamp",
    "timestamp",
    "uuid_ts",
]


def at(minutes: float) -> datetime:
    return T0 + timedelta(minutes=minutes)


def row(
    minutes: float = 0, *, id: str | None = None, loaded: float | None = None, **values: Any
) -> dict[str, Any]:
    """One Segment row at T0 + minutes; loaded (uuid_ts) a minute later unless told."""
    ts = at(minutes)
    return {
        "id": id or f"msg-{next(_counter)}",
        "anonymous_id": None,
        "user_id": None,
        "received_at": ts,
        "sent_at": ts,
        "original_timestamp": ts,
        "timestamp": ts,
        "uuid_ts": at(loaded if loaded is not None else minutes + 1),
        **values,
    }


def page_row(minutes: float = 0, *, name: str | None = None, **values: Any) -> dict[str, Any]:
    """One `pages` (or `screens`) row: Segment's message and context columns, `name`, and
    the given properties (`path`, `url`, `title`, ...)."""
    return row(
        minutes,
        name=name,
        context_ip="10.0.0.1",
        context_library_name="analytics.js",
        **values,
    )


def group_row(minutes: float = 0, *, group_id: str | None = "g1", **traits: Any) -> dict[str, Any]:
    """One `groups` row: Segment's message and context columns, `group_id`, the traits."""
    return row(minutes, group_id=group_id, context_ip="10.0.0.1", **traits)


def write_tables(url: str, schema: str, tables: dict[str, list[dict[str, Any]]]) -> None:
    """Append rows to tables, creating them (Segment-typed) when missing.

    `identifies`, `aliases` and `tracks` always exist (empty if no rows are given).
    """
    engine = sa.create_engine(url)
    defaults: dict[str, list[str]] = {
        "identifies": [],
        "aliases": ["previous_id"],
        "tracks": ["event", "event_text"],
    }
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        existing = set(sa.inspect(conn).get_table_names(schema=schema))
        for table in set(defaults) | set(tables):
            rows = tables.get(table, [])
            frame = pd.DataFrame(rows)
            for column in COMMON + defaults.get(table, []):
                if column not in frame.columns:
                    frame[column] = None
            for column in ("received_at", "sent_at", "original_timestamp", "timestamp", "uuid_ts"):
                frame[column] = pd.to_datetime(frame[column], utc=True)
            for column in frame.columns:
                if frame[column].dtype == object and frame[column].isna().all():
                    frame[column] = frame[column].astype("string")
            if table in existing:
                if len(frame):
                    _add_missing_columns(conn, schema, table, frame)
                    frame.to_sql(table, conn, schema=schema, if_exists="append", index=False)
            else:
                frame.to_sql(table, conn, schema=schema, if_exists="replace", index=False)
    engine.dispose()


def _add_missing_columns(conn: sa.Connection, schema: str, table: str, frame: pd.DataFrame) -> None:
    have = set(
        conn.execute(
            sa.text(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_schema = :schema AND table_name = :table"
            ),
            {"schema": schema, "table": table},
        ).scalars()
    )
    for column in frame.columns:
        if column not in have:
            sql_type = (
                "TIMESTAMP WITH TIME ZONE"
                if "datetime" in str(frame[column].dtype)
                else (
                    "BIGINT"
                    if str(frame[column].dtype) in ("int64", "Int64")
                    else "BOOLEAN"
                    if str(frame[column].dtype) in ("bool", "boolean")
                    else "DOUBLE PRECISION"
                    if "float" in str(frame[column].dtype)
                    else "VARCHAR"
                )
            )
            conn.execute(
                sa.text(f'ALTER TABLE "{schema}"."{table}" ADD COLUMN "{column}" {sql_type}')
            )


def drop_schemas(url: str, *names: str) -> None:
    """Drop these schemas and all they hold, if they exist."""
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for name in names:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{name}" CASCADE'))
    engine.dispose()


def sandbox_settings(url: str, schema: str, sandbox: Any, **extra: Any) -> Any:
    """Settings for a run from `schema` at `url` into the sandbox, with state in
    `{schema}_state` (the `pg_schema` fixture drops both)."""
    from connect_sync.settings import Settings

    return Settings(
        warehouse_url=url,
        source_schema=schema,
        state_schema=f"{schema}_state",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
        **extra,
    )
