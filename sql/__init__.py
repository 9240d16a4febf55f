"""Every SQL statement of the job, as files; identifiers are quoted, values are bound."""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import cache
from importlib.resources import files

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Dialect

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@cache
def load(name: str) -> str:
    """The text of `sql/NAME.sql`."""
    return files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


@cache
def variant(name: str, dialect_name: str) -> str:
    """`DIALECT/NAME` when `sql/DIALECT/NAME.sql` exists (a dialect's own version of a
    statement), else `NAME`."""
    if files(__package__).joinpath(dialect_name, f"{name}.sql").is_file():
        return f"{dialect_name}/{name}"
    return name


def quote_identifier(dialect: Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def render(name: str, dialect: Dialect, **identifiers: str | Sequence[str]) -> TextClause:
    """`sql/NAME.sql` (or `sql/DIALECT/NAME.sql` when the dialect has its own version) with
    `{placeholder}` identifiers quoted for the dialect.

    Placeholders take identifiers only (schema, table, column names; a list of names
    renders as a comma-separated list); values always go through `:bound` parameters of
    the returned clause.
    """
    return render_text(load(variant(name, dialect.name)), dialect, **identifiers)


def render_text(template: str, dialect: Dialect, **identifiers: str | Sequence[str]) -> TextClause:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in identifiers:
            raise KeyError(f"SQL placeholder {{{key}}} has no identifier")
        value = identifiers[key]
        if isinstance(value, str):
            return quote_identifier(dialect, value)
        if not value:
            raise ValueError(f"SQL placeholder {{{key}}} has an empty list of identifiers")
        return ", ".join(quote_identifier(dialect, v) for v in value)

    return text(_PLACEHOLDER.sub(substitute, template))
