"""Audience SQL, parsed with sqlglot: checked to be one query that only reads the source
schema, then translated to the warehouse's dialect. Pure: no I/O.

An audience is written once, in PostgreSQL syntax (the neutral form), and runs unchanged on
every supported warehouse: the checked tree, not the file's text, is what gets executed, so
a text trick the parser reads one way and the database another cannot reach the warehouse.

Failure contract: every function here raises `AudienceError` (one line, exit code 2) for SQL
that is not a single read of the source schema; nothing else is raised for bad SQL.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import sqlglot
from connect_sync.warehouse.dialects import DIALECTS
from connect_sync.warehouse.errors import WarehouseError
from sqlglot import exp
from sqlglot.errors import ErrorLevel, SqlglotError
from sqlglot.optimizer.normalize_identifiers import normalize_identifiers

#: The dialect audience files are written in.
SOURCE_DIALECT = "postgres"

#: The warehouses audiences run on: SQLAlchemy dialect name -> sqlglot dialect name.
SQLGLOT_DIALECTS: dict[str, str] = {name: d.sqlglot for name, d in DIALECTS.items()}

#: The bound values the job supplies (`:start`, `:end`, `:schema`).
PARAMETERS: tuple[str, ...] = ("start", "end", "schema")

#: `{schema}` becomes this identifier while parsing; tables must be qualified with it.
_SCHEMA_SENTINEL = "__audience_source_schema__"
_PLACEHOLDER = re.compile(r"\{(\w+)\}")
_PARAM_SENTINEL = "__audience_param_{}__"

#: Statement shapes an audience may use: queries and their clauses. Any other node that is
#: neither a function nor an expression (INSERT, COPY, SET, INTO, FOR UPDATE, PRAGMA, ...)
#: is refused. Allow-list, so a statement sqlglot learns later is refused too.
ALLOWED_CLAUSES: frozenset[type[exp.Expression]] = frozenset(
    {
        exp.Select,
        exp.Union,
        exp.Intersect,
        exp.Except,
        exp.Subquery,
        exp.With,
        exp.CTE,
        exp.From,
        exp.Join,
        exp.Lateral,
        exp.Where,
        exp.Group,
        exp.Having,
        exp.Qualify,
        exp.Order,
        exp.Ordered,
        exp.Limit,
        exp.Offset,
        exp.Fetch,
        exp.WindowSpec,
        exp.Filter,
        exp.WithinGroup,
        exp.IgnoreNulls,
        exp.RespectNulls,
        exp.Cube,
        exp.Rollup,
        exp.GroupingSets,
        exp.Alias,
        exp.Aliases,
        exp.TableAlias,
        exp.Table,
        exp.Star,
        exp.Distinct,
        exp.Tuple,
        exp.Values,
        exp.Identifier,
        exp.DataType,
        exp.DataTypeParam,
        exp.Interval,
        exp.IntervalSpan,
        exp.Var,
    }
)

#: Expressions (not functions) that are refused although they compute rather than command:
#: positional or session parameters (`$1`, `@@x`), and user-defined operators, which call
#: arbitrary functions.
DENIED_EXPRESSIONS: frozenset[type[exp.Expression]] = frozenset(
    {exp.Parameter, exp.SessionParameter, exp.Operator}
)

#: The functions an audience may call: pure computations on the rows it reads. Allow-list,
#: so anything else is refused: sequences (nextval, setval), file and network access
#: (pg_read_file, lo_import, dblink, read_csv, glob), settings, sleeps, user-defined
#: functions (which may write), and every function sqlglot does not know.
ALLOWED_FUNCTIONS: frozenset[type[exp.Func]] = frozenset(
    {
        # logic and comparison
        exp.And,
        exp.Or,
        exp.Case,
        exp.If,
        exp.Coalesce,
        exp.Nullif,
        exp.Greatest,
        exp.Least,
        exp.Exists,
        exp.Cast,
        exp.TryCast,
        # aggregates
        exp.Count,
        exp.CountIf,
        exp.Sum,
        exp.Avg,
        exp.Min,
        exp.Max,
        exp.LogicalOr,
        exp.LogicalAnd,
        exp.AnyValue,
        exp.ApproxDistinct,
        # window functions
        exp.RowNumber,
        exp.Rank,
        exp.DenseRank,
        exp.PercentRank,
        exp.CumeDist,
        exp.Ntile,
        exp.Lag,
        exp.Lead,
        exp.FirstValue,
        exp.LastValue,
        exp.NthValue,
        # text
        exp.Lower,
        exp.Upper,
        exp.Length,
        exp.Trim,
        exp.Substring,
        exp.Concat,
        exp.ConcatWs,
        exp.Replace,
        exp.StrPosition,
        exp.SplitPart,
        exp.Left,
        exp.Right,
        exp.StartsWith,
        exp.RegexpLike,
        # numbers
        exp.Abs,
        exp.Round,
        exp.Floor,
        exp.Ceil,
        # time
        exp.CurrentDate,
        exp.CurrentTimestamp,
        exp.Extract,
        exp.TimestampTrunc,
        exp.DateTrunc,
        exp.Date,
        exp.DateAdd,
        exp.DateSub,
        exp.DateDiff,
    }
)


class AudienceError(WarehouseError):
    """The audience cannot be used as given (exit 2 with this message)."""


@dataclass(frozen=True)
class AudienceQuery:
    """A checked audience in one dialect, ready for `sqlalchemy.text`."""

    #: `SELECT DISTINCT user_id FROM (<audience>)`, values as `:name` bound parameters.
    sql: str
    #: The job's bound values the query uses (a subset of PARAMETERS).
    parameters: tuple[str, ...]
    #: The source-schema tables the query reads (lower case, as written).
    tables: tuple[str, ...]


def prepare_audience(text: str, where: str, dialect: str, schema: str) -> AudienceQuery:
    """The audience TEXT (named WHERE in messages) checked and translated for the
    SQLAlchemy DIALECT, reading SCHEMA."""
    target = SQLGLOT_DIALECTS.get(dialect)
    if target is None:
        supported = ", ".join(sorted(SQLGLOT_DIALECTS))
        raise AudienceError(f"audiences cannot run on {dialect} (supported: {supported})")
    return translate(check_audience(text, where), where, target, schema)


def check_audience(text: str, where: str) -> exp.Query:
    """The audience's one query, parsed in SOURCE_DIALECT, if it only reads the source
    schema with allowed functions and the job's parameters."""
    tree = _parse(_substitute_placeholders(text, where), where)
    for node in tree.walk():
        _check_node(node, where)
    _check_user_id(tree, where)
    return tree


def translate(tree: exp.Query, where: str, dialect: str, schema: str) -> AudienceQuery:
    """The checked TREE as `SELECT DISTINCT user_id` SQL in the sqlglot DIALECT, its
    tables in SCHEMA.

    Identifiers written in lower case (quoted or not) are Segment's case-insensitive
    names: they take the dialect's stored case (upper on Snowflake) and are always
    quoted, so `"timestamp"` is the same column on every warehouse.
    """
    tree = normalize_identifiers(tree.copy(), dialect=SOURCE_DIALECT)
    for identifier in tree.find_all(exp.Identifier):
        if identifier.this == _SCHEMA_SENTINEL:
            identifier.replace(exp.to_identifier(schema, quoted=schema != schema.lower()))
        elif identifier.quoted and identifier.this == identifier.this.lower():
            identifier.set("quoted", False)
    tables = sorted({t.name.lower() for t in tree.find_all(exp.Table) if t.db})
    wrapped = (
        exp.select(exp.column("user_id", table="audience"))
        .distinct()
        .from_(tree.subquery("audience"))
    )
    wrapped = normalize_identifiers(wrapped, dialect=dialect)
    used: set[str] = set()
    for placeholder in list(wrapped.find_all(exp.Placeholder)):
        used.add(placeholder.name)
        placeholder.replace(exp.var(_PARAM_SENTINEL.format(placeholder.name)))
    try:
        sql = wrapped.sql(
            dialect=dialect, identify=True, comments=False, unsupported_level=ErrorLevel.RAISE
        )
    except SqlglotError as exc:
        raise AudienceError(
            f"audience {where} cannot be written for {dialect}: {_first_line(exc)}"
        ) from None
    # sqlalchemy.text reads `:name` as a bound parameter anywhere, even inside a string
    # literal: escape every colon of the generated SQL, then put back the job's parameters.
    sql = sql.replace(":", "\\:")
    for name in used:
        sql = sql.replace(_PARAM_SENTINEL.format(name), f":{name}")
    return AudienceQuery(sql=sql, parameters=tuple(sorted(used)), tables=tuple(tables))


def _substitute_placeholders(text: str, where: str) -> str:
    def substitute(match: re.Match[str]) -> str:
        if match.group(1) != "schema":
            raise AudienceError(
                f"audience {where}: unknown placeholder {{{match.group(1)}}} "
                "(the only one is {schema}, the source schema)"
            )
        return _SCHEMA_SENTINEL

    return _PLACEHOLDER.sub(substitute, text)


def _parse(text: str, where: str) -> exp.Query:
    try:
        parsed = sqlglot.parse(text, read=SOURCE_DIALECT)
        statements = [s for s in parsed if s is not None and not isinstance(s, exp.Semicolon)]
    except SqlglotError as exc:
        raise AudienceError(f"audience {where} is not valid SQL: {_first_line(exc)}") from None
    if not statements:
        raise AudienceError(f"audience {where} is empty: it must be one SELECT query")
    if len(statements) > 1:
        raise AudienceError(
            f"audience {where} must be a single statement (found {len(statements)})"
        )
    tree = statements[0]
    if not isinstance(tree, exp.Select | exp.SetOperation | exp.Subquery):
        raise AudienceError(f"audience {where} must be a SELECT query (found {_kind(tree)})")
    return tree


def _check_node(node: exp.Expression, where: str) -> None:
    if isinstance(node, exp.Placeholder):
        _check_parameter(node, where)
    elif isinstance(node, exp.Func):
        if isinstance(node.parent, exp.Dot):
            raise AudienceError(
                f"audience {where} calls the schema-qualified function "
                f"{_function_name(node)}(): only built-in functions are allowed"
            )
        if type(node) not in ALLOWED_FUNCTIONS:
            raise AudienceError(
                f"audience {where} calls {_function_name(node)}(), which an audience may not "
                "call (see the allowed functions under Audiences in the README)"
            )
    elif isinstance(node, exp.Table):
        _check_table(node, where)
    elif type(node) in DENIED_EXPRESSIONS or not (
        isinstance(node, exp.Condition) or type(node) in ALLOWED_CLAUSES
    ):
        raise AudienceError(f"audience {where} must only read: it uses {_kind(node)}")


def _check_parameter(node: exp.Placeholder, where: str) -> None:
    supplied = ", ".join(f":{p}" for p in PARAMETERS)
    if not node.this:
        raise AudienceError(f"audience {where} uses a positional parameter: name one of {supplied}")
    if node.name not in PARAMETERS:
        raise AudienceError(
            f"audience {where} uses the parameter :{node.name}, which the job does not "
            f"supply (it supplies {supplied})"
        )


def _check_table(table: exp.Table, where: str) -> None:
    if not isinstance(table.this, exp.Identifier):
        return  # a table function: its function node is checked on its own
    if table.catalog or (table.db and table.db != _SCHEMA_SENTINEL):
        raise AudienceError(
            f"audience {where} reads {_table_name(table)}, outside the source schema: "
            "name source tables as {schema}.table"
        )
    if not table.db and table.name.lower() not in _visible_ctes(table):
        raise AudienceError(
            f"audience {where} reads {_table_name(table)}, which is neither a table of "
            "the source schema ({schema}.table) nor one of its WITH queries"
        )


def _visible_ctes(table: exp.Table) -> set[str]:
    """The WITH names in scope at TABLE: an outer query's, and a sibling WITH query's
    only if defined before this one (all of them in WITH RECURSIVE)."""
    names: set[str] = set()
    child: exp.Expression = table
    parent = table.parent
    while parent is not None:
        if isinstance(parent, exp.With):
            ctes = parent.expressions
            position = next((i for i, c in enumerate(ctes) if c is child), len(ctes))
            visible = ctes if parent.args.get("recursive") else ctes[:position]
            names |= {c.alias_or_name.lower() for c in visible}
        else:
            for with_ in parent.iter_expressions():
                if isinstance(with_, exp.With) and with_ is not child:
                    names |= {c.alias_or_name.lower() for c in with_.expressions}
        child, parent = parent, parent.parent
    return names


def _check_user_id(tree: exp.Query, where: str) -> None:
    """A query whose columns are all named must name one `user_id`."""
    selects = tree.selects
    if any(isinstance(s, exp.Star) or s.is_star for s in selects):
        return
    if "user_id" not in {name.lower() for name in tree.named_selects}:
        raise AudienceError(f"audience {where} must return a user_id column")


def _table_name(table: exp.Table) -> str:
    return ".".join(
        "{schema}" if part == _SCHEMA_SENTINEL else part
        for part in (table.catalog, table.db, table.name)
        if part
    )


def _function_name(node: exp.Func) -> str:
    return node.name if isinstance(node, exp.Anonymous) else node.sql_name().lower()


def _kind(node: exp.Expression) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    return node.key.upper()


def _first_line(exc: Exception) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
