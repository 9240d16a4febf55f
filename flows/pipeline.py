"""The sync pipeline: warehouse -> transforms -> Connect, one stage per stream.

Plain Python with no Prefect import: the CLI runs it directly, and `flows.sync` wraps the
same stages as Prefect tasks. One pipeline, two entry points.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from connect.client import ClientConfig, DeliveryStats
from connect.outbox import ApiOutbox, DryRunOutbox, Outbox
from connect_sync.settings import Settings
from flows.report import RunReport
from transforms.changes import fingerprints
from transforms.events import dedupe_messages, property_dicts, track_payloads
from transforms.identity import IdentityGraph, resolve_identities
from transforms.traits import device_tokens, latest_traits
from transforms.users import identify_payloads
from warehouse.engine import create_engine
from warehouse.segment import EPOCH, SegmentSource, Window
from warehouse.state import StateStore

log = logging.getLogger(__name__)

STREAMS = ("aliases", "users", "events")
#: The warehouse table behind each stream's cursor.
CURSOR_TABLES = {"aliases": "aliases", "users": "identifies", "events": "tracks"}

ProgressCallback = Callable[[str, int, int], None]


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
        self._alias_rows: pd.DataFrame | None = None
        self._cursors: dict[str, datetime] = {}

    # -- set-up ---------------------------------------------------------------------------

    def prepare(self) -> None:
        settings = self.settings
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
        self.state.migrate()
        self.report.run_id = (
            "dry-run" if self.options.dry_run else self.state.start_run(self.options.kind)
        )
        self._cursors = {} if self.options.full_refresh else self.state.cursors()
        self.outbox = (
            DryRunOutbox(self.options.output)
            if self.options.dry_run
            else ApiOutbox(self._client_config())
        )
        self.graph = resolve_identities(self.source.identity_links())
        self.report.identity_conflicts = len(self.graph.conflicts)
        self.report.identity_cycles = len(self.graph.cycles)
        if len(self.graph.conflicts) or len(self.graph.cycles):
            log.warning(
                "identity: %s groups with competing user ids, %s cycles (see the run report)",
                len(self.graph.conflicts),
                len(self.graph.cycles),
            )

    def _client_config(self) -> ClientConfig:
        s = self.settings
        return ClientConfig(
            base_url=s.api_url,
            api_key=s.api_key_value() or "",
            concurrency=s.concurrency,
            rate_limit=s.rate_limit,
            max_retries=s.max_retries,
            timeout_s=s.request_timeout_s,
            batch_size=s.batch_size,
        )

    def window(self, stream: str) -> Window:
        """The rows this run reads for a stream: a backfill's window, or since the cursor
        minus the lookback."""
        if self.options.backfill is not None:
            return self.options.backfill
        cursor = self._cursors.get(stream)
        if cursor is None:
            return Window("uuid_ts", EPOCH)
        return Window("uuid_ts", cursor - timedelta(hours=self.settings.lookback_hours))

    # -- stages ---------------------------------------------------------------------------

    def sync_aliases(self) -> None:
        """Every alias row becomes one identify {user_id, previous_id}, delivered once."""
        window = self.window("aliases")
        rows = self.source.aliases(window)
        self._alias_rows = rows
        rows, _ = dedupe_messages(rows)
        rows = rows[rows["previous_id"].notna() & rows["user_id"].notna()]
        ids = rows["id"].astype(str)
        done = self.state.delivered_among("alias", ids)
        fresh = rows[~ids.isin(done)]
        self.report.merges_already_delivered = len(rows) - len(fresh)
        items = [
            (str(m), {"user_id": str(u), "previous_id": str(p)})
            for m, u, p in zip(fresh["id"], fresh["user_id"], fresh["previous_id"], strict=True)
        ]
        stats = self._send("aliases", "identify", items, self._ack_delivered("alias"))
        self.report.merges_sent += stats.sent
        self._settle("aliases", rows=self.source_rows_max(rows), stats=stats)

    def sync_users(self) -> None:
        """One identify per changed canonical user, merged over all of their rows."""
        assert self.graph is not None
        window = self.window("users")
        if window.since == EPOCH and self.options.backfill is None:
            identifies = self.source.identifies()
            touched_max = _max(identifies, "uuid_ts")
        else:
            touched = self.source.touched_ids(window)
            if self._alias_rows is not None:
                alias_ids = pd.concat(
                    [self._alias_rows["previous_id"], self._alias_rows["user_id"]]
                )
                touched = pd.concat([touched, alias_ids]).dropna()
            canonical = self.graph.resolve(touched.astype(str))
            members = self.graph.members(canonical)
            identifies = self.source.identifies(members.tolist()) if len(members) else None
            touched_max = None
        if identifies is None or identifies.empty:
            self._settle("users", rows=touched_max, stats=DeliveryStats())
            return
        identifies, _ = dedupe_messages(identifies)
        identifies = identifies.assign(
            canonical_id=self.graph.resolve(
                identifies["user_id"].fillna(identifies["anonymous_id"]).astype(str)
            )
        )
        identifies = identifies[identifies["canonical_id"].notna()]
        latest = latest_traits(identifies)
        built = identify_payloads(
            latest, device_tokens(identifies), self.settings.phone_default_region
        )
        self.report.quality.update(built.quality)
        self.report.users_considered += len(built.payloads)
        prints = dict(zip(built.user_ids, fingerprints(built.payloads), strict=True))
        previous = {} if self.options.full_refresh else self.state.fingerprints(built.user_ids)
        items = [
            (user, payload)
            for user, payload in zip(built.user_ids, built.payloads, strict=True)
            if previous.get(user) != prints[user]
        ]
        self.report.users_unchanged += len(built.payloads) - len(items)

        def ack(keys: list[str]) -> None:
            if not self.options.dry_run:
                self.state.record_fingerprints([(k, prints[k]) for k in keys], self.report.run_id)

        stats = self._send("users", "identify", items, ack)
        self.report.users_sent += stats.sent
        self.report.users_rejected += len(stats.rejected)
        if touched_max is None:
            touched_max = _max(identifies, "uuid_ts")
        self._settle("users", rows=touched_max, stats=stats)

    def sync_events(self) -> None:
        """One track per message id never delivered before, attributed to the canonical id."""
        assert self.graph is not None
        window = self.window("events")
        tracks = self.source.tracks(window)
        self.report.events_read += len(tracks)
        read_max = _max(tracks, "uuid_ts")
        tracks, duplicates = dedupe_messages(tracks)
        self.report.events_deduplicated += duplicates
        ids = tracks["id"].astype(str)
        done = self.state.delivered_among("event", ids)
        tracks = tracks[~ids.isin(done)]
        self.report.events_already_delivered += len(done)
        who = tracks["user_id"].fillna(tracks["anonymous_id"])
        tracks = tracks.assign(canonical_id=self.graph.resolve(who.astype("string")))
        properties = self._event_properties(tracks, window)
        built = track_payloads(tracks, properties)
        self.report.quality.update(built.quality)
        self.report.events_rejected += len(built.rejected)
        self.report.rejected_by_reason.update(built.quality)
        if not self.options.dry_run:
            self.state.record_rejections(self.report.run_id, "events", built.rejected)
        items = list(zip(built.message_ids, built.payloads, strict=True))
        stats = self._send("events", "track", items, self._ack_delivered("event"))
        self.report.events_sent += stats.sent
        self.report.events_rejected += len(stats.rejected) - len(stats.failed)
        self._settle("events", rows=read_max, stats=stats)

    def _event_properties(self, tracks: pd.DataFrame, window: Window) -> pd.Series:
        parts = []
        for table in sorted(set(tracks["event"].dropna().astype(str))):
            frame = self.source.event_properties(table, window)
            if frame is not None and len(frame):
                parts.append(property_dicts(frame))
        if not parts:
            return pd.Series(dtype=object)
        combined = pd.concat(parts)
        return combined[~combined.index.duplicated(keep="last")]

    # -- delivery and bookkeeping ---------------------------------------------------------

    def _ack_delivered(self, kind: str) -> Callable[[list[str]], None]:
        def ack(keys: list[str]) -> None:
            if not self.options.dry_run:
                self.state.record_delivered(kind, keys, self.report.run_id)

        return ack

    def _send(self, stream: str, kind: str, items: list, on_ack) -> DeliveryStats:
        assert self.outbox is not None
        total = len(items)
        done = 0

        def progress(n: int) -> None:
            nonlocal done
            done += n
            if self.progress:
                self.progress(stream, done, total)

        if self.progress:
            self.progress(stream, 0, total)
        stats = self.outbox.send(kind, items, on_ack, progress)
        self.report.requests += stats.requests
        self.report.retries += stats.retries
        if stats.rejected and not self.options.dry_run:
            rejected = pd.DataFrame(
                [
                    {
                        "message_id": r.key if kind == "track" or stream == "aliases" else None,
                        "user_id": r.payload.get("user_id"),
                        "reason": r.reason,
                        "retryable": r.retryable,
                        "endpoint": f"/v2/{kind}",
                        "payload": r.payload,
                    }
                    for r in stats.rejected
                ]
            )
            self.state.record_rejections(self.report.run_id, stream, rejected)
            for r in stats.rejected:
                self.report.rejected_by_reason[r.reason] += 1
        return stats

    def source_rows_max(self, rows: pd.DataFrame) -> datetime | None:
        return _max(rows, "uuid_ts")

    def _settle(self, stream: str, rows: datetime | None, stats: DeliveryStats) -> None:
        """Move the stream's cursor, only when nothing of it is left undelivered."""
        if stats.failed:
            self.report.streams_failed.append(stream)
            log.error("%s: %s items not delivered; cursor not moved", stream, len(stats.failed))
            return
        if self.options.dry_run or self.options.backfill is not None or rows is None:
            return
        self.state.move_cursor(CURSOR_TABLES[stream], rows, self.report.run_id)

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
        if not self.options.dry_run and report.run_id and hasattr(self, "state"):
            self.state.finish_run(report.run_id, report.status, report.as_dict())
        return report

    def run_stage(self, stream: str) -> None:
        getattr(self, f"sync_{stream}")()


def _max(frame: pd.DataFrame | None, column: str) -> datetime | None:
    if frame is None or frame.empty or column not in frame.columns:
        return None
    value = pd.to_datetime(frame[column], utc=True).max()
    return None if pd.isna(value) else value.to_pydatetime()


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
