"""SQL audiences: a read-only query in sql/audiences/ that returns a `user_id` column."""

from __future__ import annotations

import re
from datetime import datetime
from importlib.resources import files
from pathlib import Path

import sqlalchemy as sa
from connect_sync.warehouse.errors import WarehouseError
from sqlalchemy.engine import Engine

from connect_sync import sql

WRITE_KEYWORDS = re.compile(
    r"\b(insert|update|delete|merge|upsert|create|drop|alter|truncate|grant|revoke|copy|"
    r"attach|detach|vacuum|call|execute|do|set|reset|lock|comment|refresh|install|load|"
    r"export|import|pragma|checkpoint|into)\b",
    re.IGNORECASE,
)
_STRINGS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"")
_COMMENTS = re.compile(r"--[^\n]*|/\*.*?\*/", re.DOTALL)


class AudienceError(WarehouseError):
    """The audience cannot be used as given (exit 2 with this message)."""


def audience_path(name_or_path: str) -> Path:
    """`NAME` -> sql/audiences/NAME.sql; anything ending in .sql is taken as a path."""
    if name_or_path.endswith(".sql") or "/" in name_or_path:
        path = Path(name_or_path)
        if not path.is_file():
            raise AudienceError(f"audience file {path} not found")
        return path
    candidate = Path(str(files(sql).joinpath("audiences", f"{name_or_path}.sql")))
    if not candidate.is_file():
        available = sorted(p.stem for p in candidate.parent.glob("*.sql"))
        raise AudienceError(
            f"no audience named {name_or_path!r} (available: {', '.join(available) or 'none'})"
        )
    return candidate


def check_read_only(text: str, where: str) -> str:
    """The query without comments or a trailing `;`, if it is one read-only SELECT/WITH."""
    stripped = _COMMENTS.sub(" ", text).strip().rstrip(";").strip()
    bare = _STRINGS.sub("''", stripped)
    if ";" in bare:
        raise AudienceError(f"audience {where} must be a single statement")
    if not re.match(r"^(select|with)\b", bare, re.IGNORECASE):
        raise AudienceError(f"audience {where} must be a SELECT query")
    found = WRITE_KEYWORDS.search(bare)
    if found:
        raise AudienceError(f"audience {where} must only read: it uses {found.group(1).upper()}")
    return stripped


def load_audience(
    engine: Engine, name_or_path: str, schema: str, start: datetime, end: datetime
) -> set[str]:
    """The distinct user ids the audience selects, run read-only with bound parameters.

    The query may use `{schema}` (the quoted source schema) and the bound values
    `:start`, `:end` and `:schema`.
    """
    path = audience_path(name_or_path)
    where = path.name
    query = check_read_only(path.read_text(encoding="utf-8"), where)
    try:
        inner = sql.render_text(query, engine.dialect, schema=schema).text
    except KeyError as exc:
        raise AudienceError(f"audience {where}: unknown placeholder {exc.args[0]}") from None
    wrapped = sa.text(f"SELECT DISTINCT audience.user_id FROM ({inner}) AS audience")
    params = {"start": start, "end": end, "schema": schema}
    wanted = {k: v for k, v in params.items() if re.search(rf":{k}\b", inner)}
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn.execute(sa.text("SET TRANSACTION READ ONLY"))
            try:
                rows = conn.execute(wrapped, wanted).scalars().all()
            finally:
                conn.rollback()
    except sa.exc.DBAPIError as exc:
        message = str(getattr(exc, "orig", exc)).strip().splitlines()[0]
        if "user_id" in message.lower():
            raise AudienceError(f"audience {where} must return a user_id column") from None
        raise AudienceError(f"audience {where} failed: {message}") from None
    return {str(r) for r in rows if r is not None}
