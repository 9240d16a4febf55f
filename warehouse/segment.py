"""Reading one Segment source schema: identifies, aliases, tracks and event tables.

Every statement comes from `sql/` (a dialect's own version where it differs), with
identifiers quoted for the dialect and values bound. Reads stream through
`warehouse.frames` in batches of `chunk_size` rows; the frame-returning methods gather
those batches, the `iter_*` methods hand them out one by one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import sqlalchemy as sa
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.engine import describe, release_file_database, release_unused_memory
from connect_sync.warehouse.errors import WarehouseError, is_driver_error
from connect_sync.warehouse.frames import iter_frames, read_frame
from sqlalchemy import TextClause, bindparam
from sqlalchemy.engine import Engine

from connect_sync import sql

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
ID_CHUNK = 10_000


@dataclass(frozen=True)
class LinkSource:
    """A table whose calls link two ids of one person (mapping.md, Identity)."""

    kind: str
    table: str
    from_column: str
    to_column: str = "user_id"


#: Every source of identity links, in one place: the link statements run once per source.
LINK_SOURCES = (
    LinkSource("alias", "aliases", "previous_id"),
    LinkSource("identify", "identifies", "anonymous_id"),
    LinkSource("track", "tracks", "anonymous_id"),
)
#: The table behind each kind of identity link.
LINK_TABLES = {s.kind: s.table for s in LINK_SOURCES}
LINK_COLUMNS = ["from_id", "to_id", "kind", "ts", "loaded"]
#: The placeholders of the statements that name the table they read.
_TABLE_PLACEHOLDERS = frozenset({"table", "identifies", "aliases", "tracks"})
#: Segment's deduplicating view of a table, on BigQuery: `identifies_view` etc.
SEGMENT_VIEW_SUFFIX = "_view"


@dataclass(frozen=True)
class Window:
    """Rows whose `column` lies in [since, until).

    The column is `uuid_ts` (load time) for runs and `received_at` for backfills.
    """

    column: str = "uuid_ts"
    since: datetime = EPOCH
    until: datetime = FAR_FUTURE

    @property
    def params(self) -> dict[str, datetime]:
        return {"since": self.since, "until": self.until}


class SegmentSource:
    """One Segment source schema in a warehouse, read with SQLAlchemy (and, where the
    backend has one, its native Arrow reader)."""

    def __init__(
        self,
        engine: Engine,
        schema: str,
        chunk_size: int = 100_000,
        *,
        native: bool = True,
        views: bool = False,
    ) -> None:
        self.engine = engine
        self.schema = schema
        self.chunk_size = chunk_size
        self.native = native
        #: Read Segment's `<table>_view` (deduplicated, on BigQuery) where it exists.
        self.views = views
        self._tables: set[str] | None = None
        self._columns: dict[str, list[str]] | None = None

    # -- what the schema holds ------------------------------------------------------------

    def tables(self) -> set[str]:
        """The schema's tables; WarehouseError when unreachable or the schema is missing."""
        if self._tables is None and capabilities(self.engine.dialect.name).tables_by_query:
            with self._errors("list the tables of"), self.engine.connect() as conn:
                clause = sql.render("schema_tables", self.engine.dialect, schema=self.schema)
                rows = conn.execute(clause, {"schema": self.schema}).all()
            if not rows:
                raise WarehouseError(
                    f"schema {self.schema!r} not found in the warehouse "
                    f"{describe(str(self.engine.url))}"
                )
            normalize = self.engine.dialect.normalize_name
            self._tables = {normalize(t) or t for _, t in rows if t is not None}
        if self._tables is None:
            with self._errors("list the tables of"):
                inspector = sa.inspect(self.engine)
                schemas = inspector.get_schema_names()
                # DuckDB names schemas with their catalog: `demo.segment`.
                if not any(
                    s.lower() == self.schema.lower() or s.lower().endswith(f".{self.schema}")
                    for s in schemas
                ):
                    raise WarehouseError(
                        f"schema {self.schema!r} not found in the warehouse "
                        f"{describe(str(self.engine.url))}"
                    )
                self._tables = set(inspector.get_table_names(schema=self.schema))
        return self._tables

    def columns(self, table: str) -> list[str]:
        """The table's columns in order (empty when the table does not exist)."""
        if self._columns is None:
            clause = sql.render("table_columns", self.engine.dialect, schema=self.schema)
            with self._errors("list the columns of"), self.engine.connect() as conn:
                rows = conn.execute(clause, {"schema": self.schema}).all()
            normalize = self.engine.dialect.normalize_name
            columns: dict[str, list[str]] = {}
            for table_name, column_name in rows:
                columns.setdefault(normalize(table_name) or table_name, []).append(
                    normalize(column_name) or column_name
                )
            self._columns = columns
        return list(self._columns.get(table, []))

    def check(self, tables: Sequence[str] = ()) -> None:
        """Fail with a message naming what is wrong before any work starts: the schema is
        missing, or one of `tables` that exists cannot be read by this role. A table that
        does not exist is not an error: Segment creates a table only once that kind of call
        has arrived, and a stream without its table has nothing to do."""
        available = self.tables()  # the schema itself must exist
        present = [t for t in tables if t in available]
        with self._errors("connect to"), self.engine.connect() as conn:
            for table in present:
                clause = sql.render(
                    "probe_table",
                    self.engine.dialect,
                    schema=self.schema,
                    table=self.relation(table),
                )
                with self._errors("read", table):
                    conn.execute(clause).all()

    def has(self, table: str) -> bool:
        """Whether the schema holds `table` (Segment creates it on the first such call)."""
        return table in self.tables()

    def relation(self, table: str) -> str:
        """What is read for Segment's `table`: the table, or with `views` Segment's
        deduplicating `<table>_view` where the schema holds one."""
        view = f"{table}{SEGMENT_VIEW_SUFFIX}"
        return view if self.views and view in self.tables() else table

    # -- reading --------------------------------------------------------------------------

    def clause(self, name: str, params: dict[str, Any], **identifiers: Any) -> TextClause:
        """The statement `sql/NAME.sql` for this schema and dialect, window bounds typed."""
        identifiers = {
            k: self.relation(v) if k in _TABLE_PLACEHOLDERS else v for k, v in identifiers.items()
        }
        clause = sql.render(
            name, self.engine.dialect, schema=self.schema, timestamp="timestamp", **identifiers
        )
        # Times are bound as timezone-aware timestamps: BigQuery compares TIMESTAMP columns
        # only with TIMESTAMP parameters, and the others convert to their column type.
        binds = [
            bindparam(k, type_=sa.TIMESTAMP(timezone=True))
            for k, v in params.items()
            if isinstance(v, datetime)
        ]
        # A list is an IN list (expanding), except `*_list`: one array parameter.
        binds += [
            bindparam(k, expanding=not k.endswith("_list"))
            for k, v in params.items()
            if isinstance(v, list)
        ]
        return clause.bindparams(*binds) if binds else clause

    def _read(self, name: str, params: dict | None = None, **identifiers: Any) -> pd.DataFrame:
        params = params or {}
        clause = self.clause(name, params, **identifiers)
        table = _single_table(identifiers)
        with self._errors("read", table, query=name), self.engine.connect() as conn:
            frame = read_frame(conn, clause, params, self.chunk_size, native=self.native)
        release_file_database(self.engine)
        release_unused_memory()  # the driver's batches, freed as they were combined
        return frame

    def _iter(
        self, name: str, params: dict | None = None, **identifiers: Any
    ) -> Iterator[pd.DataFrame]:
        params = params or {}
        clause = self.clause(name, params, **identifiers)
        table = _single_table(identifiers)
        with self._errors("read", table, query=name), self.engine.connect() as conn:
            yield from iter_frames(conn, clause, params, self.chunk_size, native=self.native)
        release_file_database(self.engine)

    def _link_sources(self) -> list[LinkSource]:
        return [s for s in LINK_SOURCES if self.has(s.table)]

    def _per_link_source(self, name: str, params_of: Any) -> pd.DataFrame:
        """`sql/NAME.sql` run for each link source that exists, its rows tagged with the
        source's kind, one frame."""
        frames = []
        for source in self._link_sources():
            frame = self._read(
                name,
                params_of(source.kind),
                table=source.table,
                from_column=source.from_column,
                to_column=source.to_column,
            )
            frames.append(frame.assign(kind=source.kind))
        if not frames:
            return pd.DataFrame({c: pd.Series(dtype=object) for c in LINK_COLUMNS})
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def identity_links(self) -> pd.DataFrame:
        """Distinct (from_id, to_id, kind, ts, loaded) links of the whole schema."""
        return self._per_link_source("identity_links", lambda kind: {})[LINK_COLUMNS]

    def identity_links_loaded(
        self, since: dict[str, datetime], until: dict[str, datetime]
    ) -> pd.DataFrame:
        """The links of rows loaded in (since, until] of each link kind's table."""
        frame = self._per_link_source(
            "identity_links_loaded", lambda kind: {"since": since[kind], "until": until[kind]}
        )
        return frame[LINK_COLUMNS]

    def identity_link_stats(self, until: dict[str, datetime]) -> pd.DataFrame:
        """Per link kind whose table exists: `rows_until` (loaded up to until[kind]),
        `rows_loaded`, `rows_all` and `loaded_max` of the link rows of its table."""
        frame = self._per_link_source("identity_link_stats", lambda kind: {"until": until[kind]})
        return frame[["kind", "rows_until", "rows_loaded", "rows_all", "loaded_max"]]

    def aliases(self, window: Window) -> pd.DataFrame:
        return self._read("aliases_window", window.params, aliases="aliases", window=window.column)

    def touched_ids(self, window: Window) -> pd.Series:
        return self._touched("identifies", window)

    def touched_ids_in(self, table: str, window: Window) -> pd.Series:
        """The id each row of `table` in the window belongs to (its user id, else its
        anonymous id), distinct: the users a run re-evaluates. Empty when the table does
        not exist (pages, screens and groups may not)."""
        if table not in self.tables():
            return pd.Series([], name="id", dtype=object)
        return self._touched(table, window)

    def _touched(self, table: str, window: Window) -> pd.Series:
        # `touched_ids` reads any table that has Segment's id columns
        frame = self._read("touched_ids", window.params, identifies=table, window=window.column)
        return frame["id"]

    def ids_rows(self, table: str = "identifies") -> pd.DataFrame:
        """Per id of the table's rows (`id`: user id, else anonymous id; null for rows of
        neither) its `n_rows` and newest `loaded` (uuid_ts): one scan of the id columns."""
        # `ids_rows` reads any table that has Segment's id columns
        return self._read("ids_rows", identifies=table)

    def identifies(
        self, ids: Sequence[str] | None = None, columns: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """All identify rows, or those of the given user or anonymous ids, in `columns`
        (default: every column), as one frame of whole Arrow columns. Reading by ids, a row
        of two of the ids may come back twice: the caller keeps one per message id."""
        columns = list(columns or self.columns("identifies"))
        if ids is None:
            return self._read("identifies_all", identifies="identifies", columns=columns)
        return self._for_ids("identifies", ids, columns)

    def rows_for_ids(self, table: str, ids: Sequence[str]) -> pd.DataFrame | None:
        """Every column of the rows of `table` that belong to one of `ids` (user id in
        `ids`, or no user id and anonymous id in `ids`: a row with a user id is that
        user's); None when the table does not exist. As `identifies(ids)`, for `pages`,
        `screens` and `groups`: a row may come back twice, the caller keeps one."""
        if table not in self.tables():
            return None
        return self._for_ids(table, ids, self.columns(table))

    def _for_ids(self, table: str, ids: Sequence[str], columns: list[str]) -> pd.DataFrame:
        """The `columns` of the rows of the given ids (a row of two of them: twice)."""
        if not ids:  # no IN list at all (PostgreSQL types an empty one as integers)
            empty = Window(since=EPOCH, until=EPOCH)
            return self._read(
                "calls_window", empty.params, table=table, window=empty.column, columns=columns
            )
        # `identifies_for_ids` reads any table that has Segment's id columns
        frames = [
            self._read("identifies_for_ids", p, identifies=table, columns=columns)
            for p in self._id_params(ids)
        ]
        frames = [f for f in frames if len(f)] or frames[:1]
        return frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)

    def iter_identifies(
        self, ids: Sequence[str] | None = None, columns: Sequence[str] | None = None
    ) -> Iterator[pd.DataFrame]:
        """Identify rows in frames of at most `chunk_size` rows (bounded memory)."""
        columns = list(columns or self.columns("identifies"))
        if ids is None:
            yield from self._iter("identifies_all", identifies="identifies", columns=columns)
            return
        for params in self._id_params(ids):
            yield from self._iter(
                "identifies_for_ids", params, identifies="identifies", columns=columns
            )

    def _id_params(self, ids: Sequence[str]) -> list[dict[str, Any]]:
        """The parameters of `identifies_for_ids`, one dict a query: DuckDB takes all ids
        as one list parameter, other warehouses IN lists of at most ID_CHUNK ids."""
        ids = list(dict.fromkeys(ids))
        if capabilities(self.engine.dialect.name).array_parameters:
            return [{"id_list": ids}]
        return [{"ids": ids[i : i + ID_CHUNK]} for i in range(0, max(len(ids), 1), ID_CHUNK)]

    def tracks(self, window: Window, *, ordered: bool = True) -> pd.DataFrame:
        """Track rows of the window, oldest event first (`timestamp`, `received_at`, `id`),
        or in storage order (`ordered=False`): a caller that only needs the order can take
        it from `transforms.traits.chronological` without the warehouse's sort, which at
        2.5M rows held ~900 MB more than the rows themselves."""
        name = "tracks_window" if ordered else "tracks_in_window"
        return self._read(name, window.params, tracks="tracks", window=window.column)

    def hours(self, table: str, window: Window) -> pd.DataFrame:
        """The rows of a call table in the window per `hour` of event time (null: rows
        without one), with their `n_rows`: where a message stream cuts its time slices."""
        return self._read("calls_hours", window.params, table=table, window=window.column)

    def tracks_in_slice(self, window: Window, bounds: dict[str, Any]) -> pd.DataFrame:
        """Track rows of the window in one time slice (`bounds`: `lo`, `hi`, `from_start`,
        `to_end`, see sql/tracks_in_slice.sql), in storage order."""
        params = {**window.params, **bounds}
        return self._read("tracks_in_slice", params, tracks="tracks", window=window.column)

    def calls_in_slice(
        self, table: str, window: Window, bounds: dict[str, Any]
    ) -> pd.DataFrame | None:
        """As `calls`, for the rows of one time slice (`tracks_in_slice`)."""
        if table not in self.tables():
            return None
        return self._read(
            "calls_in_slice",
            {**window.params, **bounds},
            table=table,
            window=window.column,
            columns=self.columns(table),
        )

    def calls_before(
        self, table: str, window: Window, ids: Sequence[str], lo: datetime, columns: list[str]
    ) -> pd.DataFrame:
        """The `columns` of the window's rows of these message ids whose event time is
        before `lo` or missing: whether a later slice's message was in an earlier one."""
        frames = [
            self._read(
                "calls_of_ids_before_slice",
                {**window.params, "lo": lo, "ids": list(ids[i : i + ID_CHUNK])},
                table=table,
                window=window.column,
                columns=columns,
            )
            for i in range(0, len(ids), ID_CHUNK)
        ]
        return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]

    def iter_tracks(self, window: Window) -> Iterator[pd.DataFrame]:
        """Track rows of the window, oldest first, in frames of at most `chunk_size` rows."""
        yield from self._iter("tracks_window", window.params, tracks="tracks", window=window.column)

    def event_properties(
        self,
        event_table: str,
        window: Window,
        columns: Sequence[str],
        bounds: dict[str, Any] | None = None,
    ) -> pd.DataFrame | None:
        """The event's own table for the window: `id` and those of `columns` it has (columns
        the table gained later included); None when the table does not exist (yet). With
        `bounds`, only the rows whose track is in that time slice (`tracks_in_slice`).

        Duplicate rows of one message id (BigQuery keeps them) are all returned; the
        transforms keep one per id.
        """
        if event_table not in self.tables():
            return None
        wanted = set(columns)
        columns = ["id", *(c for c in self.columns(event_table) if c in wanted and c != "id")]
        if bounds is not None:
            return self._read(
                "event_properties_in_slice",
                {**window.params, **bounds},
                table=event_table,
                tracks="tracks",
                window=window.column,
                columns=columns,
            )
        return self._read(
            "event_properties",
            window.params,
            table=event_table,
            window=window.column,
            columns=columns,
        )

    def calls(self, table: str, window: Window) -> pd.DataFrame | None:
        """Every column of the rows of a call table (`pages`, `screens`, `groups`) in the
        window, in storage order (duplicates of a message included: the caller keeps one
        and orders them, `transforms.traits.chronological`); None when the table does not
        exist (a stream with nothing to do)."""
        if table not in self.tables():
            return None
        return self._read(
            "calls_window",
            window.params,
            table=table,
            window=window.column,
            columns=self.columns(table),
        )

    # -- errors ---------------------------------------------------------------------------

    @contextmanager
    def _errors(
        self, action: str, table: str | None = None, query: str | None = None
    ) -> Iterator[None]:
        """Driver errors as one WarehouseError line naming what is missing."""
        try:
            yield
        except WarehouseError:
            raise
        except Exception as exc:
            if not _is_database_error(exc):
                raise
            raise WarehouseError(self._explain(exc, action, table, query)) from exc

    def _explain(
        self, exc: BaseException, action: str, table: str | None, query: str | None
    ) -> str:
        message = _first_line(exc)
        lowered = message.lower()
        state = _sqlstate(exc)
        where = f"{self.schema}.{table}" if table else f"schema {self.schema}"
        if state == "42501" or "permission denied" in lowered or "access denied" in lowered:
            return f"no permission to {action} {where} (grant SELECT to this role): {message}"
        if state == "3D000" or ("database" in lowered and "does not exist" in lowered):
            return f"the database of {describe(str(self.engine.url))} does not exist: {message}"
        if state in ("42P01", "3F000") or (
            "does not exist" in lowered or "not found" in lowered or "catalog error" in lowered
        ):
            return f"cannot {action} {where}: it does not exist ({message})"
        if _is_connection_error(exc, state):
            return f"cannot reach the warehouse {describe(str(self.engine.url))}: {message}"
        suffix = f" (query {query})" if query else ""
        return f"cannot {action} {where}{suffix}: {message}"


def _single_table(identifiers: dict[str, Any]) -> str | None:
    """The table a statement reads, when it reads one."""
    tables = [v for k, v in identifiers.items() if k in _TABLE_PLACEHOLDERS]
    return tables[0] if len(tables) == 1 else None


def _is_database_error(exc: BaseException) -> bool:
    # ArgumentError/CompileError: a dialect refusing its settings or a statement it
    # cannot render; one line for the user like any driver error.
    if isinstance(
        exc,
        sa.exc.DBAPIError | sa.exc.OperationalError | sa.exc.ArgumentError | sa.exc.CompileError,
    ):
        return True
    return is_driver_error(exc)


def _is_connection_error(exc: BaseException, state: str | None) -> bool:
    if state and state.startswith("08"):
        return True
    orig = getattr(exc, "orig", exc)
    name = type(orig).__name__
    text = str(orig).lower()
    return (
        isinstance(exc, sa.exc.OperationalError)
        or name in ("OperationalError", "IOException", "ConnectionException")
        or "connection refused" in text
        or "could not connect" in text
        or "could not translate host" in text
    )


def _sqlstate(exc: BaseException) -> str | None:
    orig = getattr(exc, "orig", exc)
    state = getattr(orig, "sqlstate", None)
    if state is None:
        diag = getattr(orig, "diag", None)
        state = getattr(diag, "sqlstate", None)
    return str(state) if state else None


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", exc)).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
