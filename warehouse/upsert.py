"""Insert rows into a state table, a key conflict doing nothing or updating some columns,
in each warehouse's own way.

How each dialect does it is declared once, in UPSERT_STYLES:

- `on_conflict`: `INSERT ... ON CONFLICT` (PostgreSQL, DuckDB).
- `merge`: one `MERGE` whose source is a UNION ALL of bound, typed rows (Snowflake,
  BigQuery: no ON CONFLICT; a MERGE is one atomic statement even where DML has no
  multi-statement transactions).
- `staged`: a temp table, then `UPDATE ... FROM` and `INSERT ... WHERE NOT EXISTS` in one
  transaction (Redshift: no ON CONFLICT, and its MERGE takes only a table as its source).

Failure contract: `upsert_style` raises WarehouseError for a dialect with no declared
style, so a state location the job cannot write is refused before anything is sent;
`upsert` lets driver errors through (the caller names the state location).
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from connect_sync.warehouse.dialects import DIALECTS, UpsertStyle
from connect_sync.warehouse.errors import WarehouseError
from sqlalchemy.dialects.postgresql import insert as pg_insert

from connect_sync import sql

Style = UpsertStyle

#: How each state dialect writes an upsert (declared in `dialects`).
UPSERT_STYLES: dict[str, Style] = {name: d.upsert for name, d in DIALECTS.items()}
#: Rows per statement: MERGE sources are bound parameters (BigQuery takes 10,000 a query).
ROWS_PER_STATEMENT: dict[Style, int] = {"on_conflict": 1_000, "merge": 500, "staged": 1_000}


def upsert_style(dialect_name: str) -> Style:
    """The dialect's way to upsert; WarehouseError when it has none."""
    try:
        return UPSERT_STYLES[dialect_name]
    except KeyError:
        raise WarehouseError(
            f"the state store cannot be kept in a {dialect_name!r} database: set "
            f"CONNECT_SYNC_STATE_URL to one of {', '.join(sorted(UPSERT_STYLES))}"
        ) from None


def upsert(
    conn: sa.Connection,
    table: sa.Table,
    rows: list[dict[str, Any]],
    keys: list[str],
    update: list[str] | None = None,
) -> None:
    """Insert rows (all with the same columns); on a key conflict leave the stored row, or
    set its `update` columns."""
    if not rows:
        return
    style = upsert_style(conn.dialect.name)
    step = ROWS_PER_STATEMENT[style]
    write = {"on_conflict": _on_conflict, "merge": _merge, "staged": _staged}[style]
    for i in range(0, len(rows), step):
        write(conn, table, rows[i : i + step], keys, update or [])


def _on_conflict(
    conn: sa.Connection, table: sa.Table, rows: list[dict], keys: list[str], update: list[str]
) -> None:
    stmt = pg_insert(table).values(rows)
    if update:
        stmt = stmt.on_conflict_do_update(
            index_elements=keys, set_={c: stmt.excluded[c] for c in update}
        )
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=keys)
    conn.execute(stmt)


def _quoter(conn: sa.Connection):
    return conn.dialect.identifier_preparer.quote


def _target(conn: sa.Connection, table: sa.Table) -> str:
    return conn.dialect.identifier_preparer.format_table(table)


def _fill(template: str, **parts: str) -> str:
    """The template with its `{part}` slots filled by SQL built here from quoted
    identifiers and bind names only."""
    for key, value in parts.items():
        template = template.replace("{" + key + "}", value)
    return template


def _cast_type(conn: sa.Connection, column: sa.Column) -> str:
    """The column's type without length, as the dialect writes it in a CAST."""
    generic = column.type
    if isinstance(generic, sa.String):
        generic = type(generic)()
    return conn.dialect.type_compiler_instance.process(generic)


def _merge(
    conn: sa.Connection, table: sa.Table, rows: list[dict], keys: list[str], update: list[str]
) -> None:
    quote = _quoter(conn)
    names = list(rows[0])
    columns = [table.c[n] for n in names]
    casts = [_cast_type(conn, c) for c in columns]
    selects, binds, params = [], [], {}
    for i, row in enumerate(rows):
        items = []
        for j, (column, cast) in enumerate(zip(columns, casts, strict=True)):
            name = f"p{i}_{j}"
            params[name] = row[column.name]
            binds.append(sa.bindparam(name, type_=column.type))
            items.append(f"CAST(:{name} AS {cast}) AS {quote(column.name)}")
        selects.append("SELECT " + ", ".join(items))
    when_matched = ""
    if update:
        assign = ", ".join(f"{quote(c)} = s.{quote(c)}" for c in update)
        when_matched = f"WHEN MATCHED THEN UPDATE SET {assign}"
    statement = _fill(
        _strip_comments(sql.load("state_upsert_merge")),
        target=_target(conn, table),
        rows=" UNION ALL ".join(selects),
        match=" AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys),
        when_matched=when_matched,
        columns=", ".join(quote(n) for n in names),
        values=", ".join(f"s.{quote(n)}" for n in names),
    )
    conn.execute(sa.text(statement).bindparams(*binds), params)


def _staged(
    conn: sa.Connection, table: sa.Table, rows: list[dict], keys: list[str], update: list[str]
) -> None:
    quote = _quoter(conn)
    names = list(rows[0])
    target = _target(conn, table)
    staging = quote(f"connect_sync_upsert_{uuid.uuid4().hex[:12]}")
    statements = [
        s.strip() for s in _strip_comments(sql.load("state_upsert_staged")).split("\n;\n")
    ]
    parts = dict(
        staging=staging,
        target=target,
        columns=", ".join(quote(n) for n in names),
        params=", ".join(f":{n}" for n in names),
        assign_from_s=", ".join(f"{quote(c)} = s.{quote(c)}" for c in update),
        match_target=" AND ".join(f"{target}.{quote(k)} = s.{quote(k)}" for k in keys),
        source_columns=", ".join(f"s.{quote(n)}" for n in names),
        match=" AND ".join(f"t.{quote(k)} = s.{quote(k)}" for k in keys),
    )
    create, insert_staged, update_stmt, insert_new, drop = (_fill(s, **parts) for s in statements)
    conn.execute(sa.text(create))  # gone with the transaction should a statement fail
    conn.execute(sa.text(insert_staged), rows)
    if update:
        conn.execute(sa.text(update_stmt))
    conn.execute(sa.text(insert_new))
    conn.execute(sa.text(drop))


def _strip_comments(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if not line.startswith("--"))
