"""One run of the job: set-up, each stream of the registry in order, the end.

Nothing here knows a stream: `prepare` opens the edges (warehouse, state, journal, outbox),
resolves the identity graph and loads the audience; `run_stage` runs one registered
stream and settles its result through the books; `finish` writes the run's row.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
from connect_sync.connect.outbox import ApiOutbox, DryRunOutbox, Outbox
from connect_sync.flows.books import CLOCK_SKEW, Books
from connect_sync.flows.context import ProgressCallback, RunContext
from connect_sync.flows.identity import run_identities
from connect_sync.flows.options import (
    ConfigurationError,
    SyncOptions,
    check_options,
    client_config,
)
from connect_sync.flows.report import RunReport
from connect_sync.flows.streams import BY_NAME, stages_for
from connect_sync.transforms.identity import IdentityGraph
from connect_sync.warehouse.destinations import (
    adopt_legacy_books,
    adopt_legacy_journal,
    has_books,
)
from connect_sync.warehouse.engine import create_engine, describe, release_unused_memory
from connect_sync.warehouse.identity_cache import IdentityCache
from connect_sync.warehouse.journal import journal_directory
from connect_sync.warehouse.run_lock import RunInProgress, RunLock
from connect_sync.warehouse.segment import EPOCH, SegmentSource, Window
from connect_sync.warehouse.state import StateStore

from connect_sync.secrets import mask_text
from connect_sync.settings import Settings

log = logging.getLogger(__name__)


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
    #: No row loaded after this (the coordinator's start plus the clock skew) is sent.
    horizon: datetime | None = None


def take_run_lock(state: StateStore, state_schema: str, source_schema: str) -> RunLock:
    """The run lock of this state store and source schema (a sync, a backfill, a replay:
    whatever writes delivery state), or `RunInProgress` with a line naming its holder."""
    lock = RunLock(state.engine, state_schema, source_schema)
    if lock.try_acquire():
        return lock
    holder = lock.holder()
    if holder is None and (running := state.running_run()) is not None:
        holder = f"run {running['run_id']} started {running['started_at']:%Y-%m-%d %H:%M:%S} UTC"
        if running.get("host"):
            holder += f" on {running['host']} pid {running.get('pid')}"
    raise RunInProgress(
        f"another run of source schema {source_schema!r} on this state store "
        f"is in progress ({holder or 'its run id is not recorded yet'}): wait for it to end"
    )


class SyncJob:
    """One run of the job. Call `prepare`, then `run_stage` per stream, then `finish`."""

    def __init__(
        self,
        settings: Settings,
        options: SyncOptions | None = None,
        progress: ProgressCallback | None = None,
    ) -> None:
        self.settings = settings
        self.options = options or SyncOptions()
        self.progress = progress
        self.report = RunReport(
            source_schema=settings.source_schema,
            kind=self.options.kind,
            dry_run=self.options.dry_run,
        )
        self._started = time.monotonic()
        #: The run's start on the wall clock: no cursor moves past it (plus the clock skew).
        self.started_at = datetime.now(UTC)
        self.run_lock: RunLock | None = None
        self.context: RunContext | None = None
        self.books: Books | None = None
        self.rate_limit_name: str | None = None

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self, shared: SharedContext | None = None) -> None:
        """Connect, check, migrate, resolve identities; a partition takes the coordinating
        job's run, identity graph and cursors from `shared` instead."""
        settings, options = self.settings, self.options
        check_options(settings, options)
        if options.partition is not None and shared is None:
            raise ConfigurationError(f"partition {options.partition} runs from a coordinating job")
        # The job only reads the warehouse: opened read-only unless the state lives in it.
        state_inside = settings.effective_state_url == settings.warehouse_url
        self.warehouse = create_engine(
            settings.warehouse_url,
            read_only=not state_inside,
            connect_args=settings.engine_args(settings.warehouse_url),
        )
        state_engine = (
            self.warehouse
            if state_inside
            else create_engine(settings.effective_state_url, create_dirs=True)
        )
        if shared is None and not options.dry_run:
            # Connect and the key, before the warehouse is read: seconds, not a run of retries
            ApiOutbox(client_config(settings)).check()
        self.state = StateStore(state_engine, settings.state_schema, settings.books_key)
        if shared is None and not options.dry_run:  # partitions run under their coordinator's
            self._lock_run()
        source = SegmentSource(
            self.warehouse,
            settings.source_schema,
            settings.chunk_size,
            views=settings.segment_views,
        )
        source.check([BY_NAME[s.name].table for s in stages_for(options.streams)])
        self.books = Books(
            self.state, self.report, dry_run=options.dry_run, moves_cursors=not options.subset
        )
        if shared is not None:
            self._join(source, shared)
            return
        self.state.migrate()
        self._adopt_legacy_books()
        if not options.dry_run:
            for dead in self.state.fail_dead_runs():
                log.warning("run %s had died without finishing: marked failed", dead)
            self.books.open_journal(self._journal_directory(), merge_partitions=True)
        self.report.run_id = self.books.start_run(options.kind)
        self.books.horizon = self.started_at + CLOCK_SKEW
        if self.run_lock is not None:
            self.run_lock.note(
                f"run {self.report.run_id} started {self.started_at:%Y-%m-%d %H:%M:%S} UTC "
                f"on {socket.gethostname()} pid {os.getpid()}"
            )
        cursors = {} if options.full_refresh else self.state.cursors()
        if options.partitions > 1 and settings.rate_limit and not options.dry_run:
            from connect_sync.warehouse.ratelimit import ensure_table, limit_name

            ensure_table(self.state.engine, settings.state_schema)
            self.rate_limit_name = limit_name(settings.api_url, settings.api_key_value() or "")
        outbox = self._open_outbox()
        links, graph = self._resolve_identities(source)
        self.context = RunContext(
            settings, options, self.report, source, self.state, self.books, outbox, graph,
            links, cursors, progress=self.progress,
        )  # fmt: skip
        self.context.audience = self._load_audience(graph)
        self.context.link_readers = {s.name for s in stages_for(options.streams) if s.reads_links}

    def _lock_run(self) -> None:
        """Take the run lock of this state store and source schema (kept until `finish`),
        or refuse with a line naming the run that holds it."""
        if self.run_lock is not None and self.run_lock.held:  # a retried prepare
            return
        self.run_lock = take_run_lock(
            self.state, self.settings.state_schema, self.settings.source_schema
        )

    def _adopt_legacy_books(self) -> None:
        """Books kept under the plain source schema (before books were per destination)
        go to the first destination that runs; a dry run only reads them."""
        legacy = self.settings.source_schema
        if self.options.dry_run:
            if not has_books(self.state, self.state.source_schema) and has_books(
                self.state, legacy
            ):
                self.state.source_schema = legacy
            return
        if adopt_legacy_books(self.state, legacy):
            s = self.settings
            adopt_legacy_journal(
                journal_directory(s.effective_state_url, s.state_schema, legacy, s.journal_dir),
                self._journal_directory(),
            )

    def _join(self, source: SegmentSource, shared: SharedContext) -> None:
        """A partition's set-up: the coordinating job's run, graph, cursors and audience."""
        assert self.books is not None
        self.report.run_id = shared.run_id
        self.rate_limit_name = shared.rate_limit_name
        directory = self._journal_directory() / f"partition-{self.options.partition}"
        self.books.open_journal(directory, merge_partitions=False)  # one folder each
        self.books.horizon = shared.horizon
        self.context = RunContext(
            self.settings, self.options, self.report, source, self.state, self.books,
            self._open_outbox(), shared.graph, shared.links, dict(shared.cursors),
            audience=shared.audience, progress=self.progress, alias_rows=shared.alias_ids,
        )  # fmt: skip
        self.context.link_readers = {
            s.name for s in stages_for(self.options.streams) if s.reads_links and s.partitioned
        }

    def shared_context(self) -> SharedContext:
        """What partitions need from this (coordinating) job, after its aliases stage."""
        context = self.context
        assert context is not None and context.links is not None
        alias_ids = None
        if context.alias_rows is not None:
            alias_ids = context.alias_rows[["previous_id", "user_id"]].copy()
        return SharedContext(
            run_id=self.report.run_id,
            graph=context.graph,
            links=context.links,
            alias_ids=alias_ids,
            cursors=dict(context.cursors),
            audience=context.audience,
            rate_limit_name=self.rate_limit_name,
            horizon=self.books.horizon if self.books is not None else None,
        )

    def _open_outbox(self) -> Outbox:
        if self.options.dry_run:
            return DryRunOutbox(self.options.output)
        outbox = ApiOutbox(client_config(self.settings))
        if self.rate_limit_name and self.settings.rate_limit:
            from connect_sync.flows.shared_rate import SharedRateLimiter

            outbox.client.limiter = SharedRateLimiter(
                self.settings.rate_limit,
                self.state.engine,
                self.settings.state_schema,
                self.rate_limit_name,
            )
        return outbox

    def _load_audience(self, graph: IdentityGraph) -> set[str] | None:
        """The canonical ids of the audience's users, or None when the run has no audience.

        The query's `:start`/`:end` are the backfill window, else all time until now."""
        if not self.options.audience:
            return None
        from connect_sync.warehouse.audience import load_audience  # sqlglot: when used

        window = self.options.backfill or Window("received_at", EPOCH, datetime.now(UTC))
        user_ids = load_audience(
            self.warehouse,
            self.options.audience,
            self.settings.source_schema,
            window.since,
            window.until,
            timeout_s=self.settings.audience_timeout_s,
        )
        canonical = graph.resolve(pd.Series(sorted(user_ids), dtype=object))
        log.info("audience %s: %s users", self.options.audience, len(user_ids))
        return set(canonical.astype(str))

    def _resolve_identities(self, source: SegmentSource) -> tuple[pd.DataFrame, IdentityGraph]:
        """The identity graph of the whole schema, once per run: cached between runs and
        brought up to date with the links loaded since (flows.identity); transforms.identity
        says how conflicts and cycles are settled. Problems are reported, never raised."""
        s = self.settings
        cache = IdentityCache(
            self._journal_directory() / "identity",
            f"{describe(s.warehouse_url)}|{s.source_schema}",
        )
        identities = run_identities(source, cache, refresh=self.options.full_refresh)
        graph, report = identities.graph, self.report
        report.identity_graph = identities.how
        report.identity_links_read = identities.links_read
        report.identity_conflicts = len(graph.conflicts)
        report.identity_cycles = len(graph.cycles)
        report.identity_examples = graph.examples()
        release_unused_memory()  # what reading and resolving the links used
        if report.identity_examples:
            log.warning(
                "identity: %s groups with competing user ids, %s alias cycles; e.g. %s",
                len(graph.conflicts),
                len(graph.cycles),
                "; ".join(report.identity_examples[:3]),
            )
        return identities.links, graph

    def _journal_directory(self) -> Path:
        """This state store's local folder: the ack journal, and the identity cache."""
        s = self.settings
        return journal_directory(s.effective_state_url, s.state_schema, s.books_key, s.journal_dir)

    # -- the streams ----------------------------------------------------------------------

    def run_stage(self, name: str) -> None:
        """Run one registered stream and settle its result (a stream whose table the source
        does not have has nothing to do, and moves no cursor)."""
        context, books = self.context, self.books
        assert context is not None and books is not None
        stream = BY_NAME[name]
        if not stream.available(context.source):
            self.report.streams_absent.append(name)
            books.settled[name] = None
            context.done_with_links(name)
            log.info("%s: the schema has no table %s; nothing to do", name, stream.table)
            return
        result = stream.run(context)
        self.report.stream(name).undelivered += result.stats.undelivered
        books.settle(name, stream.cursor_table, result.newest, result.stats)
        release_unused_memory()

    @property
    def settled(self) -> dict[str, datetime | None]:
        assert self.books is not None
        return self.books.settled

    # -- the end --------------------------------------------------------------------------

    def finish(self, error: BaseException | None = None) -> RunReport:
        report = self.report
        report.duration_s = round(time.monotonic() - self._started, 3)
        if error is not None:
            report.status = "failed"
            report.error = mask_text(str(error))
        else:
            report.status = "failed" if report.streams_failed else "succeeded"
        if self.context is not None:
            self.context.outbox.close()
        if self.books is not None:
            self.books.finish_run()
        log.info(
            "run %s %s in %.1f s: %s; %s requests, %s retries, %s rate-limited, "
            "%s rejected, %s undelivered",
            report.run_id,
            report.status,
            report.duration_s,
            ", ".join(f"{n} {c.sent} sent" for n, c in report.streams.items()),
            report.requests,
            report.retries,
            report.rate_limited,
            report.rejected,
            report.undelivered,
        )
        self._release()
        return report

    def close_partition(self) -> None:
        """A partition's end: close the outbox, merge its journal, free its engines."""
        self.report.duration_s = round(time.monotonic() - self._started, 3)
        try:
            if self.context is not None:
                self.context.outbox.close()
            if self.books is not None:
                self.books.close_journal()
        finally:
            self._release()

    def _release(self) -> None:
        """Give back the run lock and close pooled database connections (a DuckDB file is
        free for other processes once the run is over); the engines reconnect if used."""
        if self.run_lock is not None:
            self.run_lock.release()
            self.run_lock = None
        for name in ("warehouse", "state"):
            owner = getattr(self, name, None)
            engine = getattr(owner, "engine", owner)
            if engine is not None and hasattr(engine, "dispose"):
                engine.dispose()
