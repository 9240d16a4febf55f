"""Every SQL statement of the job, as files; identifiers are quoted, values are bound."""

from __future__ import annotations

import re
from functools import cache
from importlib.resources import files

from sqlalchemy import TextClause, text
from sqlalchemy.engine import Dialect

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@cache
def load(name: str) -> str:
    """The text of `sql/NAME.sql`."""
    return files(__package__).joinpath(f"{name}.sql").read_text(encoding="utf-8")


def quote_identifier(dialect: Dialect, name: str) -> str:
    return dialect.identifier_preparer.quote(name)


def render(name: str, dialect: Dialect, **identifiers: str) -> TextClause:
    """`sql/NAME.sql` with `{placeholder}` identifiers quoted for the dialect.

    Placeholders take identifiers only (schema, table, column names); values always go
    through `:bound` parameters of the returned clause.
    """
    return render_text(load(name), dialect, **identifiers)


def render_text(template: str, dialect: Dialect, **identifiers: str) -> TextClause:
    def substitute(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in identifiers:
            raise KeyError(f"SQL placeholder {{{key}}} has no identifier")
        return quote_identifier(dialect, identifiers[key])

    return text(_PLACEHOLDER.sub(substitute, template))
