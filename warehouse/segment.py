"""Reading one Segment source schema: identifies, aliases, tracks and event tables."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd
import sqlalchemy as sa
from sqlalchemy import bindparam
from sqlalchemy.engine import Engine

import sql
from warehouse.errors import WarehouseError
from warehouse.frames import read_frame

REQUIRED_TABLES = ("identifies", "aliases", "tracks")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
ID_CHUNK = 10_000


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
    """One Segment source schema in a warehouse, read with SQLAlchemy."""

    def __init__(self, engine: Engine, schema: str, chunk_size: int = 100_000) -> None:
        self.engine = engine
        self.schema = schema
        self.chunk_size = chunk_size
        self._tables: set[str] | None = None

    def tables(self) -> set[str]:
        if self._tables is None:
            try:
                inspector = sa.inspect(self.engine)
                schemas = inspector.get_schema_names()
                # DuckDB names schemas with their catalog: `demo.segment`.
                if not any(s == self.schema or s.endswith(f".{self.schema}") for s in schemas):
                    raise WarehouseError(f"schema {self.schema!r} not found in the warehouse")
                self._tables = set(inspector.get_table_names(schema=self.schema))
            except sa.exc.OperationalError as exc:
                raise WarehouseError(f"cannot reach the warehouse: {_first_line(exc)}") from exc
        return self._tables

    def check(self) -> None:
        """Fail with a message naming what is missing before any work starts."""
        missing = [t for t in REQUIRED_TABLES if t not in self.tables()]
        if missing:
            raise WarehouseError(
                f"schema {self.schema!r} has no table {', '.join(missing)} "
                "(is this a Segment source schema?)"
            )

    def _read(self, name: str, params: dict | None = None, **identifiers: str) -> pd.DataFrame:
        clause = sql.render(name, self.engine.dialect, schema=self.schema, **identifiers)
        if params and any(isinstance(v, list) for v in params.values()):
            clause = clause.bindparams(
                *(bindparam(k, expanding=True) for k, v in params.items() if isinstance(v, list))
            )
        try:
            with self.engine.connect() as conn:
                return read_frame(conn, clause, params or {}, self.chunk_size)
        except sa.exc.ProgrammingError as exc:
            raise WarehouseError(f"query {name} failed: {_first_line(exc)}") from exc

    def identity_links(self) -> pd.DataFrame:
        """Distinct (from_id, to_id, kind, ts) links of the whole schema."""
        return self._read(
            "identity_links", aliases="aliases", identifies="identifies", tracks="tracks"
        )

    def aliases(self, window: Window) -> pd.DataFrame:
        return self._read("aliases_window", window.params, aliases="aliases", window=window.column)

    def touched_ids(self, window: Window) -> pd.Series:
        frame = self._read(
            "touched_ids", window.params, identifies="identifies", window=window.column
        )
        return frame["id"]

    def identifies(self, ids: Sequence[str] | None = None) -> pd.DataFrame:
        """All identify rows, or those of the given user or anonymous ids."""
        if ids is None:
            return self._read("identifies_all", identifies="identifies")
        ids = list(dict.fromkeys(ids))
        frames = [
            self._read(
                "identifies_for_ids", {"ids": ids[i : i + ID_CHUNK]}, identifies="identifies"
            )
            for i in range(0, max(len(ids), 1), ID_CHUNK)
        ]
        frames = [f for f in frames if len(f)] or frames[:1]
        frame = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
        return frame.drop_duplicates("id", keep="last") if len(frames) > 1 else frame

    def tracks(self, window: Window) -> pd.DataFrame:
        return self._read("tracks_window", window.params, tracks="tracks", window=window.column)

    def event_properties(self, event_table: str, window: Window) -> pd.DataFrame | None:
        """The event's own table for the window; None when the table does not exist (yet)."""
        if event_table not in self.tables():
            return None
        return self._read(
            "event_properties", window.params, table=event_table, window=window.column
        )


def _first_line(exc: BaseException) -> str:
    return str(getattr(exc, "orig", exc)).strip().splitlines()[0]
