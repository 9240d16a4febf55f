"""`rejects replay`: send again what Connect never answered, exactly once.

Replays the pending retryable rejections (batches that failed after every retry). Items
delivered since (a later sync re-read them) are skipped, as are user profiles a newer
identify has replaced; each resolved rejection is marked replayed. Items Connect now
refuses with a 400 get a new, non-retryable rejection; items still unanswered stay
pending for the next replay.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import pandas as pd
from connect_sync.connect.client import DeliveryStats
from connect_sync.connect.outbox import ApiOutbox
from connect_sync.flows.books import Books
from connect_sync.flows.job import take_run_lock
from connect_sync.flows.options import client_config
from connect_sync.flows.report import RunReport
from connect_sync.flows.streams import BOOKS, BY_NAME
from connect_sync.transforms.changes import fingerprint
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.journal import journal_directory
from connect_sync.warehouse.state import StateStore

from connect_sync.settings import Settings

log = logging.getLogger(__name__)

ENDPOINTS = {"/v2/identify": "identify", "/v2/track": "track"}

ProgressCallback = Callable[[str, int, int, DeliveryStats], None]


@dataclass
class ReplayReport:
    run_id: str = ""
    status: str = "running"
    pending: int = 0  # retryable rejections found
    sent: int = 0  # delivered now
    already_delivered: int = 0  # delivered since (or a newer profile was): not sent
    rejected: int = 0  # refused again with a 400: recorded anew, not retryable
    failed: int = 0  # still no answer: left pending
    not_replayable: int = 0  # no payload or endpoint recorded: left pending
    requests: int = 0
    retries: int = 0
    by_stream: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def replay_rejections(settings: Settings, progress: ProgressCallback | None = None) -> ReplayReport:
    """Re-send the pending retryable rejections of the configured source schema."""
    store = StateStore(
        create_engine(
            settings.effective_state_url,
            create_dirs=True,
            connect_args=settings.engine_args(settings.effective_state_url),
        ),
        settings.state_schema,
        settings.books_key,
    )
    store.migrate()
    # a replay writes delivery state as a sync does: never beside a running sync or replay
    try:
        lock = take_run_lock(store, settings.state_schema, settings.source_schema)
    except BaseException:
        store.engine.dispose()
        raise
    try:
        return _replay_locked(settings, store, progress)
    finally:
        lock.release()


def _replay_locked(
    settings: Settings, store: StateStore, progress: ProgressCallback | None
) -> ReplayReport:
    books = Books(
        store,
        RunReport(source_schema=settings.source_schema, kind="replay"),
        dry_run=False,
        moves_cursors=False,
    )
    books.open_journal(
        journal_directory(
            settings.effective_state_url,
            settings.state_schema,
            settings.books_key,
            settings.journal_dir,
        ),
        merge_partitions=False,
    )
    pending = store.rejections(retryable_only=True, pending_only=True)
    report = ReplayReport(pending=len(pending))
    if pending.empty:
        report.status = "succeeded"
        books.close_journal()
        store.engine.dispose()
        return report
    report.run_id = books.report.run_id = books.start_run("replay")
    outbox = ApiOutbox(client_config(settings))
    error: BaseException | None = None
    try:
        for (stream, endpoint), group in pending.groupby(["stream", "endpoint"], dropna=False):
            _replay_group(books, outbox, report, str(stream), endpoint, group, progress)
    except BaseException as exc:
        error = exc
        raise
    finally:
        try:
            books.close_journal()
        finally:
            report.status = "failed" if error is not None or report.failed else "succeeded"
            books.write_run(report.run_id, report.status, report.as_dict())
            store.engine.dispose()
    log.info(
        "replay %s: %s pending, %s sent, %s already delivered, %s refused, %s failed",
        report.run_id,
        report.pending,
        report.sent,
        report.already_delivered,
        report.rejected,
        report.failed,
    )
    return report


def _replay_group(
    books: Books,
    outbox: ApiOutbox,
    report: ReplayReport,
    stream: str,
    endpoint: Any,
    group: pd.DataFrame,
    progress: ProgressCallback | None,
) -> None:
    store = books.state
    kind = ENDPOINTS.get(endpoint) if isinstance(endpoint, str) else None
    book = BOOKS.get(stream)
    keyed = stream in BY_NAME and BY_NAME[stream].keyed_by_message
    key_column = "message_id" if keyed else "user_id"
    usable = group["payload"].notna() & group[key_column].notna()
    if kind is None:
        usable &= False
    report.not_replayable += int((~usable).sum())
    group = group[usable.to_numpy(dtype=bool)]
    if group.empty:
        return
    group = group.assign(key=group[key_column].astype(str))
    # one send per key: the latest rejection's payload; every rejection of it is resolved
    latest = group.drop_duplicates("key", keep="last").set_index("key")
    rejection_ids = group.groupby("key")["rejection_id"].agg(list)
    payloads = {key: orjson.loads(text) for key, text in latest["payload"].items()}
    if book:
        done = store.delivered_among(book, list(payloads))
    else:
        done = _superseded_profiles(store, latest, payloads)
    report.already_delivered += len(done)
    items = [(key, payload) for key, payload in payloads.items() if key not in done]
    prints = {} if book else {key: fingerprint(payload) for key, payload in items}
    acked: set[str] = set()
    on_delivered = books.delivered(book) if book else books.fingerprints(prints)

    def on_ack(keys: list[str]) -> None:
        acked.update(keys)
        on_delivered(keys)

    def on_progress(stats: DeliveryStats) -> None:
        if progress:
            progress(stream, stats.processed, len(items), stats)

    stats = outbox.send(kind, items, on_ack, on_progress) if items else DeliveryStats()
    books.checkpoint()
    report.sent += stats.sent
    report.requests += stats.requests
    report.retries += stats.retries
    report.rejected += len(stats.rejected)
    report.failed += stats.undelivered
    report.by_stream[stream] = report.by_stream.get(stream, 0) + stats.sent
    books.refused_again(
        stream,
        endpoint,
        pd.DataFrame(
            [
                {
                    "message_id": r.key if keyed else None,
                    "user_id": r.user_id,
                    "reason": r.reason,
                    "endpoint": endpoint,
                    "payload": r.payload,
                }
                for r in stats.rejected
            ]
        ),
    )
    resolved = done | acked | {r.key for r in stats.rejected}  # the rest stays pending
    books.replayed([rid for key in resolved for rid in rejection_ids[key]])


def _superseded_profiles(
    store: StateStore, latest: pd.DataFrame, payloads: dict[str, dict[str, Any]]
) -> set[str]:
    """Users whose rejected payload was delivered since, or replaced by a newer identify."""
    rows = store.fingerprint_rows(list(payloads))
    out: set[str] = set()
    for user, (printed, updated_at) in rows.items():
        created = pd.Timestamp(latest.at[user, "created_at"])
        created = created.tz_localize(UTC) if created.tzinfo is None else created
        if printed == fingerprint(payloads[user]) or _aware(updated_at) >= created:
            out.add(user)
    return out


def _aware(value: datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize(UTC) if stamp.tzinfo is None else stamp
