"""The sync pipeline: warehouse -> transforms -> Connect, one stage per stream.

Plain Python with no Prefect import: the CLI runs it directly, and `flows.sync` wraps the
same stages as Prefect tasks. One pipeline, two entry points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import compress
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from connect_sync.connect.client import ClientConfig, DeliveryStats, ItemChunk
from connect_sync.connect.outbox import ApiOutbox, DryRunOutbox, Outbox
from connect_sync.flows.ahead import built_ahead
from connect_sync.flows.identity import run_identities
from connect_sync.flows.report import RunReport
from connect_sync.transforms.changes import fingerprints
from connect_sync.transforms.events import (
    TrackPayloads,
    dedupe_messages,
    property_texts,
    track_payloads,
)
from connect_sync.transforms.identity import IdentityGraph
from connect_sync.transforms.messages import drop_repeated, unique_rows
from connect_sync.transforms.partition import in_partition
from connect_sync.transforms.traits import (
    chronological,
    chronological_rank,
    device_tokens,
    latest_traits,
)
from connect_sync.transforms.users import IdentifyPayloads, identify_payloads, tokens_of
from connect_sync.transforms.values import as_series, as_text
from connect_sync.warehouse.audience import load_audience
from connect_sync.warehouse.engine import create_engine, describe, release_unused_memory
from connect_sync.warehouse.frames import arrow_to_frame
from connect_sync.warehouse.identity_cache import IdentityCache
from connect_sync.warehouse.journal import AckJournal, journal_directory
from connect_sync.warehouse.segment import EPOCH, SegmentSource, Window
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings

log = logging.getLogger(__name__)

STREAMS = ("aliases", "users", "events")
#: The warehouse table behind each stream's cursor.
CURSOR_TABLES = {"aliases": "aliases", "users": "identifies", "events": "tracks"}

#: Called as progress(stream, done, total, stats): items finished of the stream's total,
#: and the live DeliveryStats (sent, retries, rejections) of its delivery.
ProgressCallback = Callable[[str, int, int, DeliveryStats], None]


class ConfigurationError(Exception):
    """Bad usage or configuration: exit 2 with this message."""


@dataclass
class SyncOptions:
    streams: tuple[str, ...] = STREAMS
    full_refresh: bool = False
    dry_run: bool = False
    output: Path | None = None
    backfill: Window | None = None
    kind: str = "sync"
    #: An audience name (sql/audiences/NAME.sql) or .sql path limiting users and events.
    audience: str | None = None
    #: Scale-out: users and events are split into `partitions` by a stable hash of the
    #: canonical id. `partition` is the one this job runs (None: the coordinating job, which
    #: runs the aliases stage and moves the cursors once every partition has succeeded).
    partitions: int = 1
    partition: int | None = None


@dataclass
class SharedContext:
    """What the coordinating job hands every partition (pickled): its run, the identity
    graph resolved once, and what the aliases stage read, so partitions resolve alike."""

    run_id: str
    graph: IdentityGraph
    links: pd.DataFrame
    alias_ids: pd.DataFrame | None
    cursors: dict[str, datetime]
    audience: set[str] | None
    #: The shared rate limit's key in the state store (None: no limit configured).
    rate_limit_name: str | None = None


@dataclass
class PartitionResult:
    """What one partition did: its report, and per stream the newest row it settled
    (absent when the stream failed in it)."""

    partition: int
    report: dict[str, Any]
    settled: dict[str, datetime | None]
    #: Seconds of wall time and of CPU time (this process) the partition took.
    wall_s: float = 0.0
    cpu_s: float = 0.0


@dataclass
class SyncJob:
    """One run of the job. Call `prepare`, then each stage, then `finish`."""

    settings: Settings
    options: SyncOptions = field(default_factory=SyncOptions)
    progress: ProgressCallback | None = None

    def __post_init__(self) -> None:
        self.report = RunReport(
            source_schema=self.settings.source_schema,
            kind=self.options.kind,
            dry_run=self.options.dry_run,
        )
        self._started = time.monotonic()
        self.outbox: Outbox | None = None
        self.graph: IdentityGraph | None = None
        self._links: pd.DataFrame | None = None
        self._alias_rows: pd.DataFrame | None = None
        self._cursors: dict[str, datetime] = {}
        self.audience: set[str] | None = None
        self.journal: AckJournal | None = None
        #: Per stream, the newest row settled without a failure (a partition's result).
        self.settled: dict[str, datetime | None] = {}
        self.rate_limit_name: str | None = None

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, shared: SharedContext | None = None) -> None:
        """Connect, check, migrate, resolve identities; a partition takes the coordinating
        job's run, identity graph and cursors from `shared` instead."""
        settings = self.settings
        self._check_partitioning(shared)
        unknown = set(self.options.streams) - set(STREAMS)
        if unknown:
            raise ConfigurationError(
                f"unknown stream {', '.join(sorted(unknown))}: choose from {', '.join(STREAMS)}"
            )
        if not self.options.dry_run and not settings.api_key_value():
            raise ConfigurationError(
                "CONNECT_API_KEY is not set: give the private key of the Connect environment "
                "(or use --dry-run)"
            )
        self.warehouse = create_engine(settings.warehouse_url)
        state_engine = (
            self.warehouse
            if settings.effective_state_url == settings.warehouse_url
            else create_engine(settings.effective_state_url, create_dirs=True)
        )
        self.source = SegmentSource(self.warehouse, settings.source_schema, settings.chunk_size)
        self.source.check()
        self.state = StateStore(state_engine, settings.state_schema, settings.source_schema)
        if shared is not None:
            self._join(shared)
            return
        self.state.migrate()
        if not self.options.dry_run:
            self._open_journal()
        self.report.run_id = (
            "dry-run" if self.options.dry_run else self.state.start_run(self.options.kind)
        )
        self._cursors = {} if self.options.full_refresh else self.state.cursors()
        if self.options.partitions > 1 and settings.rate_limit and not self.options.dry_run:
            from connect_sync.warehouse.ratelimit import ensure_table, limit_name

            ensure_table(self.state.engine, settings.state_schema)
            self.rate_limit_name = limit_name(settings.api_url, settings.api_key_value() or "")
        self.outbox = self._open_outbox()
        self._resolve_identities()
        self.audience = self._load_audience()

    def _check_partitioning(self, shared: SharedContext | None) -> None:
        check_partitioning(self.settings, self.options)
        o = self.options
        if o.partition is not None and shared is None:
            raise ConfigurationError(f"partition {o.partition} runs from a coordinating job")

    def _join(self, shared: SharedContext) -> None:
        """A partition's set-up: the coordinating job's run, graph, cursors and audience."""
        self.report.run_id = shared.run_id
        self.graph = shared.graph
        self._links = shared.links
        self._alias_rows = shared.alias_ids
        self._cursors = dict(shared.cursors)
        self.audience = shared.audience
        self.rate_limit_name = shared.rate_limit_name
        self._open_journal()
        self.outbox = self._open_outbox()

    def shared_context(self) -> SharedContext:
        """What partitions need from this (coordinating) job, after its aliases stage."""
        assert self.graph is not None and self._links is not None
        alias_ids = None
        if self._alias_rows is not None:
            alias_ids = self._alias_rows[["previous_id", "user_id"]].copy()
        return SharedContext(
            run_id=self.report.run_id,
            graph=self.graph,
            links=self._links,
            alias_ids=alias_ids,
            cursors=dict(self._cursors),
            audience=self.audience,
            rate_limit_name=self.rate_limit_name,
        )

    def _open_outbox(self) -> Outbox:
        if self.options.dry_run:
            return DryRunOutbox(self.options.output)
        outbox = ApiOutbox(self._client_config())
        if self.rate_limit_name and self.settings.rate_limit:
            from connect_sync.warehouse.ratelimit import SharedRateLimiter

            outbox.client.limiter = SharedRateLimiter(
                self.settings.rate_limit,
                self.state.engine,
                self.settings.state_schema,
                self.rate_limit_name,
            )
        return outbox

    def _load_audience(self) -> set[str] | None:
        """The canonical ids of the audience's users, or None when the run has no audience.

        The query's `:start`/`:end` are the backfill window, else all time until now."""
        if not self.options.audience:
            return None
        assert self.graph is not None
        window = self.options.backfill or Window("received_at", EPOCH, datetime.now(UTC))
        user_ids = load_audience(
            self.warehouse,
            self.options.audience,
            self.settings.source_schema,
            window.since,
            window.until,
        )
        canonical = self.graph.resolve(pd.Series(sorted(user_ids), dtype=object))
        log.info("audience %s: %s users", self.options.audience, len(user_ids))
        return set(canonical.astype(str))

    @property
    def scoped(self) -> bool:
        """Whether this job handles a subset of the users (an audience, a partition)."""
        return self.audience is not None or self.options.partition is not None

    def _in_scope(self, canonical_ids: pd.Series) -> pd.Series:
        """Which rows this job handles: those of the run's audience (all without one) whose
        canonical id hashes to this job's partition (all in an unpartitioned job)."""
        keep = pd.Series(True, index=canonical_ids.index)
        if self.audience is not None:
            keep = canonical_ids.astype(str).isin(self.audience).fillna(False).astype(bool)
        if self.options.partition is not None:
            keep &= in_partition(canonical_ids, self.options.partition, self.options.partitions)
        return keep

    def _resolve_identities(self) -> None:
        """The identity graph of the whole schema, once per run: cached between runs and
        brought up to date with the links loaded since (flows.identity); transforms.identity
        says how conflicts and cycles are settled. Problems are reported, never raised."""
        s = self.settings
        cache = IdentityCache(
            self._journal_directory() / "identity",
            f"{describe(s.warehouse_url)}|{s.source_schema}",
        )
        identities = run_identities(self.source, cache, refresh=self.options.full_refresh)
        self._links, self.graph = identities.links, identities.graph
        self.report.identity_graph = identities.how
        self.report.identity_links_read = identities.links_read
        self.report.identity_conflicts = len(self.graph.conflicts)
        self.report.identity_cycles = len(self.graph.cycles)
        self.report.identity_examples = self.graph.examples()
        release_unused_memory()  # what reading and resolving the links used
        if self.report.identity_examples:
            log.warning(
                "identity: %s groups with competing user ids, %s alias cycles; e.g. %s",
                len(self.graph.conflicts),
                len(self.graph.cycles),
                "; ".join(self.report.identity_examples[:3]),
            )

    def _open_journal(self) -> None:
        """The local acknowledgement journal; what a killed run acknowledged is merged
        into the state store now, before any bookkeeping is read."""
        directory = self._journal_directory()
        if self.options.partition is not None:  # one folder per partition: no collisions
            directory = directory / f"partition-{self.options.partition}"
        self.journal = AckJournal(directory, self.state)
        self.report.acks_recovered = self.journal.replay()
        if self.options.partition is None:  # partitions of killed runs: merged now
            for folder in sorted(directory.glob("partition-*")):
                self.report.acks_recovered += AckJournal(folder, self.state).replay()

    def _journal_directory(self) -> Path:
        """This state store's local folder: the ack journal, and the identity cache."""
        s = self.settings
        return journal_directory(
            s.effective_state_url, s.state_schema, s.source_schema, s.journal_dir
        )

    def _client_config(self) -> ClientConfig:
        return client_config(self.settings)

    def window(self, stream: str) -> Window:
        """The rows this run reads for a stream: a backfill's window, or since the cursor
        minus the lookback."""
        if self.options.backfill is not None:
            return self.options.backfill
        cursor = self._cursors.get(CURSOR_TABLES[stream])
        if cursor is None:
            return Window("uuid_ts", EPOCH)
        return Window("uuid_ts", cursor - timedelta(hours=self.settings.lookback_hours))

    # -- stages ---------------------------------------------------------------------------

    def sync_aliases(self) -> None:
        """Merge calls, sent before every other call of the run.

        Each alias row becomes one identify {user_id, previous_id}, delivered once across
        runs (`delivered`, kind `alias`). The user_id sent is the canonical id of the row's
        target (the row's own user_id unless a later alias moved it on), so a chain
        A -> B -> C arrives as merges into C whatever order the batches land in; a row
        whose previous id is that canonical id (the root of an alias cycle) merges nothing
        and is recorded without a call. Then anonymous profiles delivered in earlier runs
        and since linked to a user are folded into it the same way.
        """
        assert self.graph is not None
        window = self.window("aliases")
        rows = self.source.aliases(window)
        self._alias_rows = rows
        rows, _ = dedupe_messages(rows)
        rows = rows[rows["previous_id"].notna() & rows["user_id"].notna()]
        ids = rows["id"].astype(str)
        done = self.state.delivered_among("alias", ids)
        fresh = rows[~ids.isin(done)]
        self.report.merges_already_delivered = len(rows) - len(fresh)
        message_ids = fresh["id"].astype(str)
        previous = fresh["previous_id"].astype(str)
        target = self.graph.resolve(fresh["user_id"].astype(str))
        if self.scoped:
            wanted = self._in_scope(target)
            fresh, message_ids = fresh[wanted], message_ids[wanted]
            previous, target = previous[wanted], target[wanted]
        noop = (previous == target).to_numpy(dtype=bool)
        if noop.any():
            log.info("aliases: %s rows merge an id into itself (alias cycles)", int(noop.sum()))
            self._ack_delivered("alias")(message_ids[noop].tolist())
        # from lists: iterating Arrow-backed Series costs ~1 us a value
        targets, previous_ids = target[~noop].tolist(), previous[~noop].tolist()
        merges = ItemChunk(
            message_ids[~noop].tolist(),
            [{"user_id": u, "previous_id": p} for u, p in zip(targets, previous_ids, strict=True)],
        )
        stats = self._send("aliases", "identify", [merges], self._ack_delivered("alias"))
        self.report.merges_sent += stats.sent
        folds = self._fold_anonymous_profiles()
        self.report.merges_sent += folds.sent
        self.report.profiles_folded += folds.sent
        stats.failed = [*stats.failed, *folds.failed]
        stats.unsent += folds.unsent  # a fold never tried leaves the stream unsettled too
        # The stage handled every link read (its merges and folds): its cursor is the
        # newest of them, so the next run folds only what links loaded since then join.
        newest = [t for t in (_max(rows, "uuid_ts"), _max(self._links, "loaded")) if t]
        self._settle("aliases", rows=max(newest, default=None), stats=stats)

    def _fold_anonymous_profiles(self) -> DeliveryStats:
        """identify {user_id: canonical, previous_id: anonymous id} for each anonymous id
        Connect holds a profile for (an identify or events delivered under it in an earlier
        run) that identify/track rows have since joined to a user, so Connect moves that
        profile's traits and events to the user. Ids moved by an alias row are left to
        its merge call. Folded ids lose their fingerprint: they are no profile any more."""
        assert self.graph is not None and self._links is not None
        since = self._links_since()
        among = None
        if since is not None:
            loaded = _times(self._links["loaded"])
            recent = self._links[(loaded >= since).fillna(False).to_numpy(dtype=bool)]
            among = pd.concat([recent["from_id"], recent["to_id"]])
        candidates = self.graph.attached_among(among)
        if self.scoped and len(candidates):
            canonical = self.graph.resolve(pd.Series(candidates, dtype=object))
            candidates = candidates[self._in_scope(canonical).to_numpy(dtype=bool)]
        stale = sorted(self.state.profiles_among(candidates)) if len(candidates) else []
        if not stale:
            return DeliveryStats()
        canonical = self.graph.resolve(pd.Series(stale, dtype=object)).tolist()
        folds = ItemChunk(
            stale,
            [
                {"user_id": user, "previous_id": anon}
                for anon, user in zip(stale, canonical, strict=True)
            ],
        )

        def ack(keys: list[str]) -> None:
            if not self.options.dry_run:
                self.state.forget_users(keys)

        log.info("identity: folding %s earlier anonymous profiles into their users", len(folds))
        return self._send("aliases", "identify", [folds], ack)

    def _links_since(self) -> datetime | None:
        """Links loaded since this time are new to the aliases stage (which folds what they
        join); None when every link may be (no cursor yet, full refresh, backfill)."""
        if self.options.backfill is not None:
            return None
        cursor = self._cursors.get(CURSOR_TABLES["aliases"])
        if cursor is None:
            return None
        return cursor - timedelta(hours=self.settings.lookback_hours)

    def _touched_by_links(self, window: Window) -> pd.Series:
        """Both ids of every link seen in the window: a link can move an id's rows to
        another user even when no identify row of that user is new."""
        assert self._links is not None
        links = self._links
        column = "loaded" if window.column == "uuid_ts" else "ts"
        when = _times(links[column])
        inside = ((when >= window.since) & (when < window.until)).fillna(False)
        recent = links[inside.to_numpy(dtype=bool)]
        return pd.concat([recent["from_id"], recent["to_id"]]).astype(str)

    def sync_users(self) -> None:
        """One identify per changed canonical user, merged over all of their rows.

        A run selects the users with new identify, alias or link rows, then reads every
        identify row of every id of each such user, so a partial identify never blanks an
        older trait; a user whose payload matches the last delivered fingerprint is skipped.
        """
        assert self.graph is not None
        window = self.window("users")
        if window.since == EPOCH and self.options.backfill is None:
            self._links = None  # no later step reads the links: 100+ MB at 1M users
            identifies = self.source.identifies()
            touched_max = _max(identifies, "uuid_ts")
        else:
            touched = [self.source.touched_ids(window).astype(str), self._touched_by_links(window)]
            if self._alias_rows is not None:
                touched += [self._alias_rows["previous_id"], self._alias_rows["user_id"]]
            canonical = self.graph.resolve(pd.concat(touched).dropna().astype(str))
            if self.scoped:  # pushdown: read only the identify rows of this job's users
                canonical = canonical[self._in_scope(canonical)]
            members = self.graph.members(canonical)
            self._links = None  # no later step reads the links
            identifies = self.source.identifies(members.tolist()) if len(members) else None
            touched_max = None
        if identifies is None or identifies.empty:
            self._settle("users", rows=touched_max, stats=DeliveryStats())
            return
        # Rows that count: the first row of each message, of a known user in scope. The
        # others get no canonical id, which the transforms skip (no copy of the frame).
        canonical = self.graph.resolve(_who(identifies))
        keep = (canonical.notna() & self._in_scope(canonical)).to_numpy(dtype=bool, copy=True)
        if (first := unique_rows(identifies["id"])) is not None:
            keep &= first
        if not keep.all():
            canonical = canonical.where(keep)
        identifies = identifies.assign(canonical_id=canonical)
        del canonical
        if touched_max is None:
            touched_max = _max(identifies, "uuid_ts", rows=keep)
        # Tokens first: their working copies come and go before the latest traits exist.
        _, rank = chronological_rank(identifies)
        tokens = device_tokens(identifies, rank=rank)
        latest = latest_traits(identifies, rank=rank)
        del identifies, rank  # from here on one row per user
        release_unused_memory()
        prints: dict[str, str] = {}  # fingerprints of what is in flight, until acknowledged

        def ack(keys: list[str]) -> None:
            if self.journal is not None:
                done = [(k, prints.pop(k)) for k in keys if k in prints]
                self.journal.fingerprints(done, self.report.run_id)

        tokens = tokens_of(tokens, latest.index)  # each chunk takes its users' by position
        chunks = self._identify_chunks(latest, tokens, prints)  # built as they are sent
        stats = self._send("users", "identify", chunks, ack, total=len(latest))
        self.report.users_sent += stats.sent
        self.report.users_rejected += len(stats.rejected)
        self._settle("users", rows=touched_max, stats=stats)

    def _identify_chunks(
        self, latest: pd.DataFrame, tokens: pd.DataFrame, prints: dict[str, str]
    ) -> Iterator[ItemChunk]:
        """The identify payloads (by user id) of every user whose payload changed,
        `chunk_size` users at a time, so only one chunk's payloads exist at once."""
        chunk, region = self.settings.chunk_size, self.settings.phone_default_region

        def build(start: int) -> IdentifyPayloads:
            part = slice(start, start + chunk)
            return identify_payloads(latest.iloc[part], tokens.iloc[part], region)

        starts = range(0, len(latest), chunk)
        for built in built_ahead(build, starts, self.settings.build_threads):
            self.report.quality.update(built.quality)
            self.report.users_considered += len(built.payloads)
            users, payloads = built.user_ids, built.payloads
            previous = {} if self.options.full_refresh else self.state.fingerprints(users)
            if not previous and self.journal is None:  # nothing to compare or to remember
                yield ItemChunk(users, payloads)
                continue
            digests = fingerprints(payloads)
            changed = [previous.get(u) != d for u, d in zip(users, digests, strict=True)]
            self.report.users_unchanged += len(changed) - sum(changed)
            users = list(compress(users, changed))
            if self.journal is not None:
                prints.update(zip(users, compress(digests, changed), strict=True))
            yield ItemChunk(users, list(compress(payloads, changed)))

    def sync_events(self) -> None:
        """One track per message id never delivered before, attributed to the canonical id,
        oldest event first."""
        assert self.graph is not None
        window = self.window("events")
        tracks = self.source.tracks(window, ordered=False)
        read_max = _max(tracks, "uuid_ts")
        tracks = tracks.assign(canonical_id=self.graph.resolve(_who(tracks)))
        # The rows to send, as positions in time order (the 2.5M-row frame is never copied
        # or sorted): the first row of each message, not delivered, in scope.
        rows = chronological(tracks)
        if self.options.partition is not None:  # a partition counts and looks up its own
            rows = rows[self._in_scope(tracks["canonical_id"].take(rows)).to_numpy(dtype=bool)]
        self.report.events_read += len(rows)
        ids = tracks["id"].take(rows)
        if (first := unique_rows(ids)) is not None:
            rows, ids = rows[first], ids[first]
        self.report.events_deduplicated += self.report.events_read - len(rows)
        ids = ids.astype(str)
        done = self.state.delivered_among("event", ids)
        if done:
            rows = rows[~ids.isin(done).to_numpy(dtype=bool)]
        self.report.events_already_delivered += len(done)
        if self.audience is not None:
            rows = rows[self._in_scope(tracks["canonical_id"].take(rows)).to_numpy(dtype=bool)]
        tables = self._event_property_tables(tracks["event"].take(rows), window)
        chunks = self._track_chunks(tracks, rows, tables)  # built as they are sent
        stats = self._send("events", "track", chunks, self._ack_delivered("event"), total=len(rows))
        self.report.events_sent += stats.sent
        self.report.events_rejected += len(stats.rejected)
        self._settle("events", rows=read_max, stats=stats)

    def _mark_anonymous_profiles(self, tracks: pd.DataFrame, message_ids: list[str]) -> None:
        """Remember, before sending, the anonymous ids these events create Connect profiles
        under (no user id, no link yet), so a later run can fold them into their user."""
        if self.options.dry_run or not message_ids:
            return
        anonymous = tracks["user_id"].isna() & (
            tracks["canonical_id"].astype("string") == tracks["anonymous_id"].astype("string")
        ).fillna(False)
        sent = tracks["id"].astype(str).isin(message_ids)
        ids = tracks.loc[(anonymous & sent).to_numpy(dtype=bool), "anonymous_id"]
        self.state.record_anonymous_profiles(ids.astype(str).unique().tolist(), self.report.run_id)

    def _event_property_tables(self, events: pd.Series, window: Window) -> dict[str, pa.Table]:
        """The own table of each event in the window (`id` and property columns, one row
        per message id), as Arrow tables: each chunk takes its rows (Arrow's take costs
        half of pandas' `iloc`) and writes their JSON."""
        tables = {}
        for table in sorted(str(name) for name in events.dropna().unique()):
            frame = self.source.event_properties(table, window)
            if frame is not None and len(frame):
                frame = drop_repeated(frame, keep="last")
                tables[table] = pa.Table.from_pandas(frame, preserve_index=False)
        return tables

    def _track_chunks(
        self, tracks: pd.DataFrame, rows: np.ndarray, tables: dict[str, pa.Table]
    ) -> Iterator[ItemChunk]:
        """The payloads (by message id) of the tracks at positions `rows`, in that order,
        `chunk_size` at a time, so only one chunk's rows and payloads exist at once;
        rejections recorded per chunk."""
        table_of, row_of = _property_rows(tracks, tables)
        names = list(tables)
        chunk = self.settings.chunk_size

        def build(start: int) -> tuple[pd.DataFrame, TrackPayloads]:
            at = rows[start : start + chunk]
            part = tracks.take(at)
            properties = _chunk_properties(tables, names, table_of[at], row_of[at])
            return part, track_payloads(part, properties)

        starts = range(0, len(rows), chunk)
        for part, built in built_ahead(build, starts, self.settings.build_threads):
            self.report.quality.update(built.quality)
            self.report.events_rejected += len(built.rejected)
            self.report.rejected_by_reason.update(built.quality)
            if not self.options.dry_run:
                self.state.record_rejections(self.report.run_id, "events", built.rejected)
            self._mark_anonymous_profiles(part, built.message_ids)
            yield ItemChunk(built.message_ids, built.payloads)

    # -- delivery and bookkeeping ---------------------------------------------------------

    def _ack_delivered(self, kind: str) -> Callable[[list[str]], None]:
        """Journal acknowledged message ids (`event`, `alias`) the moment Connect acks them."""

        def ack(keys: list[str]) -> None:
            if self.journal is not None:
                self.journal.delivered(kind, keys, self.report.run_id)

        return ack

    def _send(
        self,
        stream: str,
        kind: str,
        chunks: Iterable[ItemChunk],
        on_ack,
        total: int | None = None,
    ) -> DeliveryStats:
        """Deliver items (streamed chunk by chunk, never batched up front); record what
        Connect refused or never answered; merge the acknowledgements into the state store."""
        assert self.outbox is not None
        if total is None:
            chunks = list(chunks)
            total = sum(map(len, chunks))
        progress = self.progress

        def on_progress(stats: DeliveryStats) -> None:
            if progress:
                progress(stream, stats.processed, total, stats)

        if progress:
            progress(stream, 0, total, DeliveryStats())
        stats = self.outbox.send_chunks(kind, chunks, on_ack, on_progress)
        if self.journal is not None:
            self.journal.checkpoint()
        self.report.requests += stats.requests
        self.report.retries += stats.retries
        self.report.rate_limited += stats.rate_limited
        refused = [*stats.rejected, *stats.failed]
        if refused and not self.options.dry_run:
            rejected = pd.DataFrame(
                [
                    {
                        "message_id": r.key if kind == "track" or stream == "aliases" else None,
                        "user_id": r.user_id,
                        "reason": r.reason,
                        "retryable": r.retryable,
                        "endpoint": f"/v2/{kind}",
                        "payload": r.payload,
                    }
                    for r in refused
                ]
            )
            self.state.record_rejections(self.report.run_id, stream, rejected)
            for r in stats.rejected:
                self.report.rejected_by_reason[r.reason] += 1
        self.report.undelivered += stats.undelivered
        return stats

    def _settle(self, stream: str, rows: datetime | None, stats: DeliveryStats) -> None:
        """Move the stream's cursor, only when nothing of it is left undelivered (items
        Connect refused with a 400 are recorded rejections, not undelivered)."""
        if stats.failed or stats.unsent:
            self.report.streams_failed.append(stream)
            log.error(
                "%s: %s items not delivered; cursor not moved",
                stream,
                len(stats.failed) + stats.unsent,
            )
            return
        self.settled[stream] = rows
        if (
            self.options.dry_run
            or self.options.backfill is not None
            or self.options.audience  # a subset run: rows of other users are still due
            or self.options.partition is not None  # the coordinating job moves it
            or rows is None
        ):
            return
        self.state.move_cursor(CURSOR_TABLES[stream], rows, self.report.run_id)

    # -- partitions -----------------------------------------------------------------------

    def settle_partitions(self, streams: Iterable[str], results: list[PartitionResult]) -> None:
        """The coordinating job: add the partitions' reports to this run's, then move each
        stream's cursor to the newest row any partition settled, only when every partition
        settled the stream (a failed or missing partition leaves the cursor where it is)."""
        report = self.report
        for result in results:
            merge_reports(report, result.report)
        done = {r.partition for r in results}
        missing = set(range(self.options.partitions)) - done
        for stream in streams:
            failed = missing or any(stream not in r.settled for r in results)
            if failed:
                if stream not in report.streams_failed:
                    report.streams_failed.append(stream)
                log.error("%s: not every partition succeeded; cursor not moved", stream)
                continue
            newest = [r.settled[stream] for r in results if r.settled[stream] is not None]
            if newest and not (self.options.backfill or self.options.audience):
                self.state.move_cursor(CURSOR_TABLES[stream], max(newest), report.run_id)

    # -- the end --------------------------------------------------------------------------

    def finish(self, error: BaseException | None = None) -> RunReport:
        report = self.report
        report.duration_s = round(time.monotonic() - self._started, 3)
        if error is not None:
            report.status = "failed"
            report.error = str(error)
        else:
            report.status = "failed" if report.streams_failed else "succeeded"
        if self.outbox is not None:
            self.outbox.close()
        if self.journal is not None:
            try:
                self.journal.close()
            except Exception as exc:  # the segment stays on disk: the next run merges it
                log.error("could not merge acknowledgements into the state store: %s", exc)
                if error is None:
                    report.status, report.error = "failed", str(exc)
        if not self.options.dry_run and report.run_id and hasattr(self, "state"):
            self.state.finish_run(report.run_id, report.status, report.as_dict())
        log.info(
            "run %s %s in %.1f s: %s merges, %s users, %s events sent; %s requests, "
            "%s retries, %s rate-limited, %s rejected, %s undelivered",
            report.run_id,
            report.status,
            report.duration_s,
            report.merges_sent,
            report.users_sent,
            report.events_sent,
            report.requests,
            report.retries,
            report.rate_limited,
            report.users_rejected + report.events_rejected,
            report.undelivered,
        )
        self._release()
        return report

    def close_partition(self) -> None:
        """A partition's end: close the outbox, merge its journal, free its engines."""
        self.report.duration_s = round(time.monotonic() - self._started, 3)
        try:
            if self.outbox is not None:
                self.outbox.close()
            if self.journal is not None:
                self.journal.close()
        finally:
            self._release()

    def _release(self) -> None:
        """Close pooled database connections (a DuckDB file is free for other processes
        once the run is over); the engines reconnect if used again."""
        for name in ("warehouse", "state"):
            owner = getattr(self, name, None)
            engine = getattr(owner, "engine", owner)
            if engine is not None and hasattr(engine, "dispose"):
                engine.dispose()

    def run_stage(self, stream: str) -> None:
        getattr(self, f"sync_{stream}")()
        release_unused_memory()


def check_partitioning(settings: Settings, options: SyncOptions) -> None:
    """Refuse what a partitioned run cannot do, with a one-line reason (exit 2)."""
    o = options
    if o.partitions < 1:
        raise ConfigurationError("--partitions must be at least 1")
    if o.partition is not None and not 0 <= o.partition < o.partitions:
        raise ConfigurationError(f"no partition {o.partition} of {o.partitions}")
    if o.partitions == 1:
        return
    if o.dry_run:
        raise ConfigurationError("--dry-run writes one file: run it without --partitions")
    if _backend(settings.effective_state_url) != "postgresql":
        raise ConfigurationError(
            "--partitions > 1 needs a PostgreSQL state store (CONNECT_SYNC_STATE_URL): "
            "DuckDB allows one writer at a time"
        )


def _backend(url: str) -> str | None:
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).get_backend_name()
    except Exception:  # create_engine says what is wrong with it
        return None


def client_config(settings: Settings) -> ClientConfig:
    """The delivery client's configuration from the job's settings."""
    return ClientConfig(
        base_url=settings.api_url,
        api_key=settings.api_key_value() or "",
        concurrency=settings.concurrency,
        rate_limit=settings.rate_limit,
        max_retries=settings.max_retries,
        timeout_s=settings.request_timeout_s,
        batch_size=settings.batch_size,
    )


def _who(frame: pd.DataFrame) -> pd.Series:
    """Each row's id as a string: its user id, else its anonymous id (null when neither).
    Coalesced in Arrow (pandas' astype + fillna cost 0.3 s at 2.5M rows)."""
    user, anonymous = (as_text(frame[c]) for c in ("user_id", "anonymous_id"))
    return as_series(pc.coalesce(user, anonymous), frame.index)


def _times(values: pd.Series) -> pd.Series:
    """UTC timestamps from any column the drivers return (all-null columns included)."""
    if isinstance(values.dtype, pd.ArrowDtype) and values.dtype.pyarrow_dtype == pa.null():
        return pd.Series(pd.NaT, index=values.index, dtype="datetime64[us, UTC]")
    if _is_utc_arrow(values):
        return values  # the warehouse readers' type: converting it would cost seconds
    return pd.to_datetime(values, utc=True)


def _is_utc_arrow(values: pd.Series) -> bool:
    dtype = values.dtype
    return (
        isinstance(dtype, pd.ArrowDtype)
        and pa.types.is_timestamp(dtype.pyarrow_dtype)
        and dtype.pyarrow_dtype.tz in ("UTC", "+00:00", "Etc/UTC")
    )


def _property_rows(
    tracks: pd.DataFrame, tables: dict[str, pa.Table]
) -> tuple[np.ndarray, np.ndarray]:
    """Per track, which event table holds its properties (index into `tables`, -1 none)
    and the row there: one hash lookup per table for the whole window."""
    table_of = np.full(len(tracks), -1, dtype=np.int64)
    row_of = np.full(len(tracks), -1, dtype=np.int64)
    if not tables or tracks.empty:
        return table_of, row_of
    ids = as_text(tracks["id"])
    names = pa.array(list(tables), pa.string())
    which = pc.index_in(as_text(tracks["event"]), value_set=names)  # one pass
    which = np.asarray(pc.fill_null(which, -1), dtype=np.int64)
    for code, table in enumerate(tables.values()):
        where = np.flatnonzero(which == code)
        if not len(where):
            continue
        found = pc.index_in(ids.take(pa.array(where)), value_set=as_text(table.column("id")))
        rows = np.asarray(pc.fill_null(found, -1), dtype=np.int64)
        table_of[where[rows >= 0]] = code
        row_of[where] = rows
    return table_of, row_of


def _chunk_properties(
    tables: dict[str, pa.Table], names: list[str], table_of: np.ndarray, row_of: np.ndarray
) -> pa.Array | None:
    """The properties (JSON text) of each message of one chunk, in the chunk's order:
    each event table's rows are taken and written once (null: no properties)."""
    parts, where = [], []
    for code in np.unique(table_of[table_of >= 0]):
        at = np.flatnonzero(table_of == code)
        rows = tables[names[code]].take(pa.array(row_of[at]))
        parts.append(property_texts(arrow_to_frame(rows)))
        where.append(at)
    if not parts:
        return None
    texts = pa.concat_arrays([*parts, pa.nulls(1, pa.string())])
    position = np.full(len(table_of), len(texts) - 1, dtype=np.int64)
    position[np.concatenate(where)] = np.arange(len(texts) - 1)
    return texts.take(pa.array(position))


def _max(
    frame: pd.DataFrame | None, column: str, rows: np.ndarray | None = None
) -> datetime | None:
    """The newest time in `column` (of the `rows` where True, when given)."""
    if frame is None or frame.empty or column not in frame.columns:
        return None
    values = frame[column] if rows is None else frame[column][rows]
    value = _times(values).max()
    return None if pd.isna(value) else value.to_pydatetime()


#: Report counters a partition adds to its run's report.
_SUMMED = (
    "users_considered",
    "users_sent",
    "users_unchanged",
    "users_rejected",
    "events_read",
    "events_deduplicated",
    "events_already_delivered",
    "events_sent",
    "events_rejected",
    "requests",
    "retries",
    "rate_limited",
    "undelivered",
    "acks_recovered",
)


def merge_reports(into: RunReport, part: dict[str, Any]) -> None:
    """Add a partition's report (as_dict) to the run's."""
    for name in _SUMMED:
        setattr(into, name, getattr(into, name) + int(part.get(name) or 0))
    into.quality.update(part.get("quality") or {})
    into.rejected_by_reason.update(part.get("rejected_by_reason") or {})
    for stream in part.get("streams_failed") or []:
        if stream not in into.streams_failed:
            into.streams_failed.append(stream)


def run_partition(
    settings: Settings, options: SyncOptions, shared: SharedContext | bytes
) -> PartitionResult:
    """One partition of a partitioned run (what each Dask task runs): users then events
    of the canonical users hashed to `options.partition`. Moves no cursor and finishes no
    run row: the coordinating job does both once every partition is back."""
    import pickle

    if isinstance(shared, bytes):
        shared = pickle.loads(shared)  # our own coordinating job's bytes
    assert isinstance(shared, SharedContext) and options.partition is not None
    job = SyncJob(settings, options)
    wall, cpu = time.monotonic(), time.process_time()
    try:
        job.prepare(shared)
        for stream in stages_for(options):
            if stream != "aliases":
                job.run_stage(stream)
        job.report.status = "failed" if job.report.streams_failed else "succeeded"
    finally:
        job.close_partition()
    settled = {k: v for k, v in job.settled.items() if k not in job.report.streams_failed}
    return PartitionResult(
        options.partition,
        job.report.as_dict(),
        settled,
        wall_s=time.monotonic() - wall,
        cpu_s=time.process_time() - cpu,
    )


def stages_for(options: SyncOptions) -> list[str]:
    """Streams to run, in their fixed order (merges before users before events)."""
    wanted = set(options.streams)
    if "users" in wanted:
        wanted.add("aliases")
    return [s for s in STREAMS if s in wanted]


def run_sync(
    settings: Settings,
    options: SyncOptions | None = None,
    progress: ProgressCallback | None = None,
) -> RunReport:
    """Run every stage in order; the report says what happened."""
    job = SyncJob(settings, options or SyncOptions(), progress)
    try:
        job.prepare()
        for stream in stages_for(job.options):
            job.run_stage(stream)
    except BaseException as exc:
        job.finish(exc)
        raise
    return job.finish()
