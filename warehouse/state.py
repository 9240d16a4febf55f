"""The sync state store: cursors, delivery bookkeeping, fingerprints, rejections, runs.

Tables live in their own schema under the state URL (the warehouse by default) and are
created by the job itself. Works on DuckDB, PostgreSQL, Snowflake, BigQuery and Redshift
(warehouse/upsert.py says how each writes); `migrate` refuses, with WarehouseError, a
state location it cannot write, before anything is sent.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from typing import Any

import connect_sync.sql as sql_files
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.engine import describe, is_duckdb
from connect_sync.warehouse.errors import WarehouseError, first_line
from connect_sync.warehouse.upsert import upsert, upsert_style
from sqlalchemy.engine import Engine

#: The state schema's version; `StateStore.migrate` brings older ones up step by step.
SCHEMA_VERSION = 2
WRITE_CHUNK = 1_000
READ_CHUNK = 10_000


def _now() -> datetime:
    return datetime.now(UTC)


def state_metadata(schema: str) -> sa.MetaData:
    md = sa.MetaData(schema=schema)
    sa.Table(
        "schema_version",
        md,
        sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),
    )
    sa.Table(
        "runs",
        md,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("source_schema", sa.String(255), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("report", sa.Text),
    )
    sa.Table(
        "cursors",
        md,
        sa.Column("source_schema", sa.String(255), primary_key=True),
        sa.Column("stream", sa.String(32), primary_key=True),
        sa.Column("position", sa.DateTime(timezone=True), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "delivered",
        md,
        sa.Column("source_schema", sa.String(255), primary_key=True),
        sa.Column("kind", sa.String(16), primary_key=True),
        sa.Column("message_id", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "user_fingerprints",
        md,
        sa.Column("source_schema", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64)),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Since version 2: anonymous ids Connect may hold a profile for because events were
    # sent under them; folded into their user once identity links join them to one.
    sa.Table(
        "anonymous_profiles",
        md,
        sa.Column("source_schema", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(255), primary_key=True),
        sa.Column("run_id", sa.String(64)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "rejections",
        md,
        sa.Column("rejection_id", sa.String(64), primary_key=True),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("source_schema", sa.String(255), nullable=False),
        sa.Column("stream", sa.String(32), nullable=False),
        sa.Column("message_id", sa.String(255)),
        sa.Column("user_id", sa.String(255)),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("retryable", sa.Boolean, nullable=False),
        sa.Column("endpoint", sa.String(64)),
        sa.Column("payload", sa.Text),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replayed_at", sa.DateTime(timezone=True)),
    )
    return md


class StateStore:
    """Bookkeeping for one source schema delivered to one destination, in the state
    database. `source_schema` is the books' key: `Settings.books_key` (`<schema>@<hash of
    the destination>`), or a plain schema name for books written before 0.x."""

    def __init__(self, engine: Engine, schema: str, source_schema: str) -> None:
        self.engine = engine
        self.schema = schema
        self.source_schema = source_schema
        self.metadata = state_metadata(schema)
        self.t = self.metadata.tables
        self._existing: set[str] | None = None  # tables listed by query (state_catalog_by_query)

    def table(self, name: str) -> sa.Table:
        return self.t[f"{self.schema}.{name}"]

    # -- set-up ---------------------------------------------------------------------------

    def migrate(self) -> None:
        """Create the state schema, or bring an older one up to SCHEMA_VERSION.

        `schema_version` keeps one row per version applied; each step of MIGRATIONS runs
        once, in order, in the same transaction as the version it records. A state schema
        written by a newer job is refused rather than guessed at.
        """
        upsert_style(self.engine.dialect.name)  # refuses a database it cannot write
        try:
            with self.engine.begin() as conn:
                self._migrate(conn)
            with self.engine.begin() as conn:  # the write path, tried before anything is sent
                self._insert_in(
                    conn,
                    self.table("schema_version"),
                    [{"version": SCHEMA_VERSION}],
                    ["version"],
                )
        except WarehouseError:
            raise
        except (sa.exc.SQLAlchemyError, NotImplementedError) as exc:
            raise WarehouseError(
                f"cannot write the state store {self.schema!r} in "
                f"{describe(str(self.engine.url))}: {first_line(exc)} "
                "(set CONNECT_SYNC_STATE_URL to a database the job can write)"
            ) from exc

    def _migrate(self, conn: sa.Connection) -> None:
        if capabilities(conn.dialect.name).advisory_locks:  # one migrating job at a time
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        conn.execute(sa.schema.CreateSchema(self.schema, if_not_exists=True))
        self._existing = self._listed_tables(conn)
        version = self.table("schema_version")
        self.create_table(conn, version)
        current = conn.execute(sa.select(sa.func.max(version.c.version))).scalar()
        if current is not None and current > SCHEMA_VERSION:
            raise WarehouseError(
                f"state schema {self.schema!r} is at version {current}, newer than this "
                f"connect-sync ({SCHEMA_VERSION}): upgrade connect-sync"
            )
        if current is not None:
            for step in range(current + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[step](self, conn)
                conn.execute(sa.insert(version).values(version=step))
        for table in self.metadata.sorted_tables:
            self.create_table(conn, table)
        if current is None:
            conn.execute(sa.insert(version).values(version=SCHEMA_VERSION))

    def create_table(self, conn: sa.Connection, table: sa.Table) -> None:
        """Create a state table unless it exists (asked of the dialect, or of the
        information_schema where the dialect cannot be asked: `state_catalog_by_query`)."""
        if self._existing is None:
            table.create(conn, checkfirst=True)
        elif table.name not in self._existing:
            table.create(conn)
            self._existing.add(table.name)

    def _listed_tables(self, conn: sa.Connection) -> set[str] | None:
        if not capabilities(conn.dialect.name).state_catalog_by_query:
            return None
        clause = sql_files.render("state_tables", conn.dialect)
        normalize = conn.dialect.normalize_name
        names = conn.execute(clause, {"schema": self.schema}).scalars()
        return {normalize(name) or name for name in names}

    def schema_version(self) -> int | None:
        """The version of the state schema (None before `migrate`)."""
        version = self.table("schema_version")
        with self.engine.connect() as conn:
            return conn.execute(sa.select(sa.func.max(version.c.version))).scalar()

    # -- runs -----------------------------------------------------------------------------

    def start_run(self, kind: str) -> str:
        """A new `running` row; its report holds the host and pid running it until the run
        writes its own (so a second run can name it, and a dead one can be told)."""
        run_id = uuid.uuid4().hex
        with self.engine.begin() as conn:
            conn.execute(
                sa.insert(self.table("runs")).values(
                    run_id=run_id,
                    source_schema=self.source_schema,
                    kind=kind,
                    started_at=_now(),
                    status="running",
                    report=orjson.dumps(
                        {"host": socket.gethostname(), "pid": os.getpid()}
                    ).decode(),
                )
            )
        return run_id

    def running_run(self) -> dict[str, Any] | None:
        """The newest run of this source schema still marked `running` (run_id, started_at,
        host, pid), or None; None too when the state schema does not exist yet."""
        runs = self.table("runs")
        query = (
            sa.select(runs.c.run_id, runs.c.started_at, runs.c.report)
            .where(runs.c.source_schema == self.source_schema, runs.c.status == "running")
            .order_by(runs.c.started_at.desc())
            .limit(1)
        )
        try:
            with self.engine.connect() as conn:
                row = conn.execute(query).first()
        except sa.exc.DBAPIError:  # no state schema yet
            return None
        if row is None:
            return None
        found: dict[str, Any] = {"run_id": row.run_id, "started_at": _aware(row.started_at)}
        with suppress(orjson.JSONDecodeError):
            found.update(orjson.loads(row.report or "{}"))
        return found

    def fail_dead_runs(self, found_by: str | None = None) -> list[str]:
        """Mark `failed` every run of this source schema still `running`: called with the
        run lock held, so none of them is alive (its process died). Returns their ids."""
        runs = self.table("runs")
        where = (runs.c.source_schema == self.source_schema, runs.c.status == "running")
        with self.engine.begin() as conn:
            dead = list(conn.execute(sa.select(runs.c.run_id).where(*where)).scalars())
            for run_id in dead:
                error = "the run's process died before it finished"
                if found_by:
                    error += f" (found by run {found_by})"
                conn.execute(
                    sa.update(runs)
                    .where(runs.c.run_id == run_id, runs.c.status == "running")
                    .values(
                        status="failed",
                        finished_at=_now(),
                        report=orjson.dumps({"status": "failed", "error": error}).decode(),
                    )
                )
        return dead

    def finish_run(self, run_id: str, status: str, report: dict[str, Any]) -> None:
        runs = self.table("runs")
        with self.engine.begin() as conn:
            conn.execute(
                sa.update(runs)
                .where(runs.c.run_id == run_id)
                .values(
                    finished_at=_now(),
                    status=status,
                    report=orjson.dumps(report, default=str).decode(),
                )
            )

    def recent_runs(self, limit: int = 10) -> list[dict[str, Any]]:
        runs = self.table("runs")
        query = (
            sa.select(runs)
            .where(runs.c.source_schema == self.source_schema)
            .order_by(runs.c.started_at.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    # -- cursors --------------------------------------------------------------------------

    def cursors(self) -> dict[str, datetime]:
        cursors = self.table("cursors")
        query = sa.select(cursors.c.stream, cursors.c.position).where(
            cursors.c.source_schema == self.source_schema
        )
        with self.engine.connect() as conn:
            return {stream: _aware(pos) for stream, pos in conn.execute(query)}

    def move_cursor(self, stream: str, position: datetime, run_id: str) -> None:
        """Set a stream's cursor; called only once every row before it is settled."""
        cursors = self.table("cursors")
        values = dict(
            source_schema=self.source_schema,
            stream=stream,
            position=position,
            run_id=run_id,
            updated_at=_now(),
        )
        with self.engine.begin() as conn:
            upsert(
                conn,
                cursors,
                [values],
                ["source_schema", "stream"],
                update=["position", "run_id", "updated_at"],
            )

    # -- delivery bookkeeping --------------------------------------------------------------

    def record_delivered(self, kind: str, message_ids: Sequence[str], run_id: str) -> None:
        """Mark messages (`event`, `alias`) acknowledged by Connect."""
        ids = list(message_ids)
        if ids:
            self.merge_delivered(
                pd.DataFrame({"kind": kind, "message_id": ids, "run_id": run_id}, dtype=object)
            )

    def merge_delivered(self, frame: pd.DataFrame) -> int:
        """Record acknowledged messages in bulk (columns kind, message_id, run_id); a message
        recorded before keeps its first record. Returns the rows given (after dedupe)."""
        if frame.empty:
            return 0
        frame = frame[["kind", "message_id", "run_id"]].astype(str)
        frame = frame.drop_duplicates(["kind", "message_id"], ignore_index=True)
        with self.engine.begin() as conn:
            with _staged(conn, "delivered", frame) as staging:
                if staging is not None:
                    conn.execute(
                        self._sql("state_merge_delivered", staging),
                        {"source_schema": self.source_schema, "delivered_at": _now()},
                    )
                    return len(frame)
            now = _now()
            rows = [
                {
                    "source_schema": self.source_schema,
                    "kind": k,
                    "message_id": m,
                    "run_id": r,
                    "delivered_at": now,
                }
                for k, m, r in frame.itertuples(index=False, name=None)
            ]
            self._insert_in(
                conn, self.table("delivered"), rows, ["source_schema", "kind", "message_id"]
            )
        return len(frame)

    def delivered_among(self, kind: str, message_ids: Iterable[str]) -> set[str]:
        """Which of these message ids were delivered already (a join for large sets)."""
        delivered = self.table("delivered")
        if not self._has_rows(delivered, kind=kind):
            return set()
        ids = _unique_keys(message_ids)
        if not ids:
            return set()
        params = {"source_schema": self.source_schema, "kind": kind}
        found = self._among(ids, "state_delivered_among", params, ["message_id"])
        if found is not None:
            return set(found["message_id"])
        query = sa.select(delivered.c.message_id).where(
            delivered.c.source_schema == self.source_schema,
            delivered.c.kind == kind,
            delivered.c.message_id.in_(sa.bindparam("ids", expanding=True)),
        )
        out: set[str] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(ids), READ_CHUNK):
                out.update(conn.execute(query, {"ids": list(ids[i : i + READ_CHUNK])}).scalars())
        return out

    def fingerprints(self, user_ids: Iterable[str]) -> dict[str, str]:
        """The fingerprint of the last payload delivered for each of these users."""
        table = self.table("user_fingerprints")
        if not self._has_rows(table):
            return {}
        ids = _unique_keys(user_ids)
        if not ids:
            return {}
        params = {"source_schema": self.source_schema}
        found = self._among(ids, "state_fingerprints_among", params, ["user_id", "fingerprint"])
        if found is not None:
            return dict(zip(found["user_id"], found["fingerprint"], strict=True))
        query = sa.select(table.c.user_id, table.c.fingerprint).where(
            table.c.source_schema == self.source_schema,
            table.c.user_id.in_(sa.bindparam("ids", expanding=True)),
        )
        out: dict[str, str] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), READ_CHUNK):
                out.update(dict(conn.execute(query, {"ids": list(ids[i : i + READ_CHUNK])}).all()))
        return out

    def fingerprint_rows(self, user_ids: Iterable[str]) -> dict[str, tuple[str, datetime]]:
        """(fingerprint, updated_at) of each of these users that has one (small sets)."""
        ids = _unique_keys(user_ids)
        table = self.table("user_fingerprints")
        query = sa.select(table.c.user_id, table.c.fingerprint, table.c.updated_at).where(
            table.c.source_schema == self.source_schema,
            table.c.user_id.in_(sa.bindparam("ids", expanding=True)),
        )
        out: dict[str, tuple[str, datetime]] = {}
        with self.engine.connect() as conn:
            for i in range(0, len(ids), READ_CHUNK):
                for user, printed, updated in conn.execute(query, {"ids": ids[i : i + READ_CHUNK]}):
                    out[user] = (printed, _aware(updated))
        return out

    def record_fingerprints(self, pairs: Sequence[tuple[str, str]], run_id: str) -> None:
        """Set the fingerprint of each user's delivered payload (the last pair per user wins)."""
        if not len(pairs):
            return
        users, prints = zip(*pairs, strict=True)
        self.merge_fingerprints(
            pd.DataFrame(
                {"user_id": list(users), "fingerprint": list(prints), "run_id": run_id},
                dtype=object,
            )
        )

    def merge_fingerprints(self, frame: pd.DataFrame) -> int:
        """Upsert fingerprints in bulk (columns user_id, fingerprint, run_id; last row per
        user wins). Returns the rows written."""
        if frame.empty:
            return 0
        frame = frame[["user_id", "fingerprint", "run_id"]].astype(str)
        frame = frame.drop_duplicates("user_id", keep="last", ignore_index=True)
        with self.engine.begin() as conn:
            with _staged(conn, "fingerprints", frame) as staging:
                if staging is not None:
                    conn.execute(
                        self._sql("state_merge_fingerprints", staging),
                        {"source_schema": self.source_schema, "updated_at": _now()},
                    )
                    return len(frame)
            now = _now()
            rows = [
                {
                    "source_schema": self.source_schema,
                    "user_id": u,
                    "fingerprint": f,
                    "run_id": r,
                    "updated_at": now,
                }
                for u, f, r in frame.itertuples(index=False, name=None)
            ]
            self._insert_in(
                conn,
                self.table("user_fingerprints"),
                rows,
                ["source_schema", "user_id"],
                update=["fingerprint", "run_id", "updated_at"],
            )
        return len(frame)

    def _sql(self, name: str, staging: str) -> sa.TextClause:
        return sql_files.render(
            name,
            self.engine.dialect,
            schema=self.schema,
            staging=staging,
            delivered="delivered",
            fingerprints="user_fingerprints",
            anonymous_profiles="anonymous_profiles",
        )

    def _among(
        self, ids: Sequence[str], name: str, params: dict[str, Any], columns: list[str]
    ) -> pd.DataFrame | None:
        """Rows of `name` joined with the staged ids; None when the set is small or the
        dialect has no staging fast path (callers then use IN lists)."""
        if len(ids) < STAGE_MIN or not capabilities(self.engine.dialect.name).stages_keys:
            return None
        frame = pd.DataFrame({"staged_key": ids}, dtype=object)
        with self.engine.begin() as conn, _staged(conn, "keys", frame) as staging:
            assert staging is not None
            rows = conn.execute(self._sql(name, staging), params).tuples().all()
        # column by column from plain tuples (a frame built from Row objects is ~10x slower)
        values = list(zip(*rows, strict=True)) or [() for _ in columns]
        return pd.DataFrame(dict(zip(columns, values, strict=True)), dtype=object)

    def forget_users(self, user_ids: Sequence[str]) -> None:
        """Drop the fingerprints and anonymous-profile marks of ids merged into another."""
        ids = list(dict.fromkeys(user_ids))
        if not ids:
            return
        with self.engine.begin() as conn:
            for name in ("user_fingerprints", "anonymous_profiles"):
                table = self.table(name)
                for i in range(0, len(ids), READ_CHUNK):
                    conn.execute(
                        sa.delete(table).where(
                            table.c.source_schema == self.source_schema,
                            table.c.user_id.in_(ids[i : i + READ_CHUNK]),
                        )
                    )

    def record_anonymous_profiles(self, user_ids: Sequence[str], run_id: str) -> None:
        """Mark anonymous ids that events are about to be sent under (Connect creates a
        profile for each)."""
        now = _now()
        rows = [
            {"source_schema": self.source_schema, "user_id": u, "run_id": run_id, "created_at": now}
            for u in dict.fromkeys(user_ids)
        ]
        if rows:
            self._insert(self.table("anonymous_profiles"), rows, ["source_schema", "user_id"])

    def profiles_among(self, user_ids: Iterable[str]) -> set[str]:
        """Which of these ids Connect holds a profile for from an earlier run: a
        fingerprint (an identify was delivered) or an anonymous-profile mark."""
        ids = list(dict.fromkeys(user_ids))
        tables = [self.table(name) for name in ("user_fingerprints", "anonymous_profiles")]
        if not ids or not any(self._has_rows(table) for table in tables):
            return set()
        params = {"source_schema": self.source_schema}
        staged = self._among(ids, "state_profiles_among", params, ["user_id"])
        if staged is not None:
            return set(staged["user_id"])
        found: set[str] = set()
        for name in ("user_fingerprints", "anonymous_profiles"):
            table = self.table(name)
            if not ids or not self._has_rows(table):
                continue
            query = sa.select(table.c.user_id).where(
                table.c.source_schema == self.source_schema,
                table.c.user_id.in_(sa.bindparam("ids", expanding=True)),
            )
            with self.engine.connect() as conn:
                for i in range(0, len(ids), READ_CHUNK):
                    found.update(conn.execute(query, {"ids": ids[i : i + READ_CHUNK]}).scalars())
        return found

    # -- rejections -----------------------------------------------------------------------

    def record_rejections(self, run_id: str, stream: str, rejected: pd.DataFrame) -> None:
        """Rows that could not become valid calls: message_id, user_id, reason, retryable,
        endpoint, payload (optional columns)."""
        if rejected.empty:
            return
        now = _now()
        rows = []
        for rec in rejected.to_dict("records"):
            payload = rec.get("payload")
            rows.append(
                {
                    "rejection_id": uuid.uuid4().hex,
                    "run_id": run_id,
                    "source_schema": self.source_schema,
                    "stream": stream,
                    "message_id": _str_or_none(rec.get("message_id")),
                    "user_id": _str_or_none(rec.get("user_id")),
                    "reason": str(rec["reason"]),
                    "retryable": bool(rec.get("retryable", False)),
                    "endpoint": rec.get("endpoint"),
                    "payload": _payload_text(payload),
                    "created_at": now,
                }
            )
        self._insert(self.table("rejections"), rows, ["rejection_id"])

    def pending_rejections(self, stream: str, keys: Sequence[str]) -> set[tuple[str, str]]:
        """(key, reason) of the rejections of `stream` recorded and not replayed whose key
        (the message id, else the user id) is among `keys`."""
        ids = _unique_keys(keys)
        table = self.table("rejections")
        if not ids or not self._has_rows(table, stream=stream):
            return set()
        key = sa.func.coalesce(table.c.message_id, table.c.user_id)
        query = sa.select(key, table.c.reason).where(
            table.c.source_schema == self.source_schema,
            table.c.stream == stream,
            table.c.replayed_at.is_(None),
            key.in_(sa.bindparam("ids", expanding=True)),
        )
        found: set[tuple[str, str]] = set()
        with self.engine.connect() as conn:
            for i in range(0, len(ids), READ_CHUNK):
                found.update(conn.execute(query, {"ids": ids[i : i + READ_CHUNK]}).tuples())
        return found

    def rejections(
        self, *, retryable_only: bool = False, pending_only: bool = False
    ) -> pd.DataFrame:
        table = self.table("rejections")
        query = sa.select(table).where(table.c.source_schema == self.source_schema)
        if retryable_only:
            query = query.where(table.c.retryable.is_(True))
        if pending_only:
            query = query.where(table.c.replayed_at.is_(None))
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query.order_by(table.c.created_at))]
        return pd.DataFrame(rows, columns=[c.name for c in table.columns])

    def mark_replayed(self, rejection_ids: Sequence[str]) -> None:
        table = self.table("rejections")
        with self.engine.begin() as conn:
            for i in range(0, len(rejection_ids), READ_CHUNK):
                conn.execute(
                    sa.update(table)
                    .where(table.c.rejection_id.in_(list(rejection_ids[i : i + READ_CHUNK])))
                    .values(replayed_at=_now())
                )

    def rejection_counts(self) -> dict[str, int]:
        table = self.table("rejections")
        query = (
            sa.select(table.c.reason, sa.func.count())
            .where(table.c.source_schema == self.source_schema, table.c.replayed_at.is_(None))
            .group_by(table.c.reason)
        )
        with self.engine.connect() as conn:
            return dict(conn.execute(query).all())

    def rejection_summary(self) -> list[tuple[str, str, bool, int]]:
        """(stream, reason, retryable, count) of the rejections not replayed yet."""
        table = self.table("rejections")
        columns = (table.c.stream, table.c.reason, table.c.retryable)
        query = (
            sa.select(*columns, sa.func.count())
            .where(table.c.source_schema == self.source_schema, table.c.replayed_at.is_(None))
            .group_by(*columns)
        )
        with self.engine.connect() as conn:
            return [tuple(row) for row in conn.execute(query).all()]

    # -- helpers --------------------------------------------------------------------------

    def _has_rows(self, table: sa.Table, **where: str) -> bool:
        query = (
            sa.select(sa.literal(1))
            .select_from(table)
            .where(
                table.c.source_schema == self.source_schema,
                *(table.c[k] == v for k, v in where.items()),
            )
            .limit(1)
        )
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def _insert(
        self,
        table: sa.Table,
        rows: list[dict[str, Any]],
        keys: list[str],
        update: list[str] | None = None,
    ) -> None:
        """Insert rows in chunks; on a key conflict do nothing, or update `update` columns."""
        with self.engine.begin() as conn:
            self._insert_in(conn, table, rows, keys, update)

    @staticmethod
    def _insert_in(
        conn: sa.Connection,
        table: sa.Table,
        rows: list[dict[str, Any]],
        keys: list[str],
        update: list[str] | None = None,
    ) -> None:
        upsert(conn, table, rows, keys, update)


def _add_anonymous_profiles(store: StateStore, conn: sa.Connection) -> None:
    store.create_table(conn, store.table("anonymous_profiles"))


#: Schema migrations: the step that brings a state schema from version N-1 to N.
MIGRATIONS: dict[int, Callable[[StateStore, sa.Connection], None]] = {
    2: _add_anonymous_profiles,
}
_LOCK_KEY = 0x636F6E6E  # pg advisory lock for migrations ("conn")


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _payload_text(payload: Any) -> str | None:
    """A rejected payload as JSON text: JSON bytes as they are, a dict serialized."""
    if payload is None or (isinstance(payload, float) and payload != payload):
        return None
    if isinstance(payload, bytes):
        return payload.decode()
    return orjson.dumps(payload).decode()


def _str_or_none(value: Any) -> str | None:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return None
    return str(value)


def uses_duckdb(store: StateStore) -> bool:
    return is_duckdb(store.engine)


#: Below this many keys a lookup uses IN lists: staging would cost more than it saves.
STAGE_MIN = 2_000


def _unique_keys(keys: Iterable[str]) -> list[str]:
    """Distinct non-null keys as strings, in first-seen order."""
    series = keys if isinstance(keys, pd.Series) else pd.Series(list(keys), dtype=object)
    strings = pa.array(series.dropna().astype(pd.ArrowDtype(pa.large_string())))
    return pc.unique(strings).to_pylist()  # Arrow keeps the first-seen order


@contextmanager
def _staged(conn: sa.Connection, shape: str, frame: pd.DataFrame) -> Iterator[str | None]:
    """`frame` (all text columns) staged for one set-based statement in `conn`'s
    transaction: a registered Arrow table on DuckDB, a temp table filled by COPY on
    PostgreSQL (psycopg 3). Yields its name, or None where there is no fast path."""
    name = f"connect_sync_stage_{shape}_{uuid.uuid4().hex[:12]}"
    dialect = conn.dialect.name
    driver = conn.connection.driver_connection
    if dialect == "duckdb":
        driver.register(name, pa.Table.from_pandas(frame.astype(str), preserve_index=False))
        try:
            yield name
        except BaseException:
            # an aborted transaction refuses even the unregister: the first error says why
            with suppress(Exception):
                driver.unregister(name)
            raise
        driver.unregister(name)
        return
    if dialect == "postgresql" and hasattr(driver, "cursor") and _is_psycopg3(driver):
        from psycopg import sql as pgsql

        conn.execute(sql_files.render(f"state_stage_{shape}", conn.dialect, staging=name))
        copy = pgsql.SQL("COPY {} ({}) FROM STDIN").format(
            pgsql.Identifier(name), pgsql.SQL(", ").join(map(pgsql.Identifier, frame.columns))
        )
        with driver.cursor() as cursor, cursor.copy(copy) as stream:
            for start in range(0, len(frame), COPY_CHUNK):
                stream.write(_copy_text(frame.iloc[start : start + COPY_CHUNK]))
        if shape == "keys":  # a join follows: give the planner the set's size
            conn.execute(sa.text("ANALYZE " + sql_files.quote_identifier(conn.dialect, name)))
        yield name
        return
    yield None


COPY_CHUNK = 100_000


def _copy_text(frame: pd.DataFrame) -> bytes:
    """Rows in PostgreSQL COPY text format (tab-separated, backslash-escaped)."""
    columns = []
    for column in frame.columns:
        values = frame[column].astype(str)
        values = (
            values.str.replace("\\", "\\\\", regex=False)
            .str.replace("\t", "\\t", regex=False)
            .str.replace("\n", "\\n", regex=False)
            .str.replace("\r", "\\r", regex=False)
        )
        columns.append(values)
    lines = columns[0]
    for values in columns[1:]:
        lines = lines + "\t" + values
    return ("\n".join(lines.tolist()) + "\n").encode()


def _is_psycopg3(driver: Any) -> bool:
    return type(driver).__module__.startswith("psycopg")
