"""`connect-sync`: the command line. The imperative shell around the pipeline."""

from __future__ import annotations

import errno
import logging
import os
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table
from rich.text import Text

from connect_sync.flows.report import label, short_reason
from connect_sync.secrets import mask_text
from connect_sync.settings import DEMO_DIR, DEMO_WAREHOUSE, Settings

SANDBOX_DEFAULT_KEY = "sandbox-key"
console = Console(stderr=False)
err_console = Console(stderr=True)


class UsageProblem(click.ClickException):
    """Exit 2 with one line."""

    exit_code = 2

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.message}", err=True)  # one line, never wrapped


def _settings(**overrides: Any) -> Settings:
    try:
        settings = Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise UsageProblem(f"invalid setting {where}: {first['msg']}") from None
    from connect_sync.flows.options import ConfigurationError
    from connect_sync.flows.urls import check_urls

    try:
        check_urls(settings)
    except ConfigurationError as exc:
        raise UsageProblem(str(exc)) from None
    return settings


@contextmanager
def _expected_failures():
    """Expected failures become one clear line and exit 2, never a traceback."""
    from sqlalchemy.exc import DBAPIError

    from connect_sync.connect.errors import ConnectConfigurationError
    from connect_sync.flows.pipeline import ConfigurationError
    from connect_sync.warehouse.errors import WarehouseError

    try:
        yield
    except (ConnectConfigurationError, ConfigurationError, WarehouseError) as exc:
        raise UsageProblem(mask_text(str(exc))) from None
    except DBAPIError as exc:
        if not _file_locked(exc):
            raise
        raise UsageProblem(
            "the DuckDB file is in use by another process (a run in progress?): "
            "try again once it ends"
        ) from None
    except OSError as exc:
        if exc.errno not in _DISK_ERRORS:
            raise
        raise UsageProblem(
            f"cannot write {exc.filename or 'a local file'}: {exc.strerror} "
            "(free space there, or set CONNECT_SYNC_JOURNAL_DIR)"
        ) from None


#: OSErrors that mean the local disk cannot take what the run writes.
_DISK_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES})


def _file_locked(exc: Exception) -> bool:
    """Whether a database error is DuckDB refusing a file another process holds."""
    return "Could not set lock on file" in str(exc)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """Sync a Segment warehouse into Zendesk Connect."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def _parse_streams(value: str | None) -> tuple[str, ...] | None:
    if not value:
        return None
    return tuple(s.strip() for s in value.split(",") if s.strip())


def _quiet_cluster_logs() -> None:
    """Prefect and Dask log their own INFO lines (server start, flow and task runs, every
    worker and connection) whatever the root logger says; without -v a partitioned run
    shows warnings and errors only, like an unpartitioned one. Set before either is imported
    (their logging is configured at import), and inherited by the Dask worker processes."""
    if logging.getLogger().getEffectiveLevel() > logging.INFO:
        os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
        os.environ.setdefault("DASK_LOGGING__DISTRIBUTED", "warning")
        # a busy machine's workers can take more than 4 s to exit when the run is over:
        # the nanny then kills them, and says so at WARNING; nothing the user can act on
        logging.getLogger("distributed.nanny").addFilter(_not_slow_worker_exit)


def _not_slow_worker_exit(record: logging.LogRecord) -> bool:
    return not record.getMessage().startswith("Worker process still alive after")


def _run(settings: Settings, options: Any, dask_address: str | None = None) -> Any:
    """The same pipeline either way: as a Prefect flow when a Prefect API is configured,
    else directly (no temporary Prefect server to wait for). A partitioned run always
    runs as a Prefect flow (Prefect maps its partitions over Dask): without a Prefect
    API, under a temporary Prefect server."""
    if getattr(options, "partitions", 1) > 1:
        _quiet_cluster_logs()
        from connect_sync.flows.partitioned import prefect_api
        from connect_sync.flows.sync import run_job_flow

        with prefect_api():
            return run_job_flow(settings, options, dask_address)
    if os.environ.get("PREFECT_API_URL"):
        from connect_sync.flows.sync import run_job_flow

        return run_job_flow(settings, options)
    from connect_sync.flows.pipeline import run_sync

    with _progress() as progress:
        return run_sync(settings, options, progress)


class _RateColumn(ProgressColumn):
    """Items per second over rich's moving window."""

    def render(self, task: Any) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed:,.0f}/s" if speed else "-/s", style="progress.data.speed")


@contextmanager
def _progress(interval_s: float | None = None):
    """A rich progress bar per stream on a terminal (items done, rate, sent, retries,
    rejections); otherwise (cron, a Prefect worker, CI) one plain line per stream every
    `interval_s` seconds and when the stream is done."""
    if not console.is_terminal:
        yield _progress_lines(_settings_or_default("progress_interval_s", interval_s))
        return
    with Progress(
        TextColumn("{task.description:>8}"),
        BarColumn(bar_width=16),
        MofNCompleteColumn(),
        _RateColumn(),
        TextColumn(
            "sent {task.fields[sent]:,} retries {task.fields[retries]:,} "
            "rejected {task.fields[rejected]:,}"
            "{task.fields[undelivered]}"
        ),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    ) as bar:
        tasks: dict[str, Any] = {}

        def update(stream: str, done: int, total: int, stats: Any = None, **extra: Any) -> None:
            fields = _progress_fields(done, stats, extra)
            failed = fields.pop("undelivered")
            fields["undelivered"] = f" undelivered {failed:,}" if failed else ""
            if stream not in tasks:
                tasks[stream] = bar.add_task(label(stream), total=total, **fields)
            bar.update(tasks[stream], completed=done, total=total, **fields)

        yield update


def _progress_fields(done: int, stats: Any, extra: dict[str, Any]) -> dict[str, int]:
    """What a progress line shows: the same counts as the run report (bad rows included)."""
    return {
        "sent": getattr(stats, "sent", done),
        "retries": getattr(stats, "retries", 0),
        "rejected": len(getattr(stats, "rejected", ())) + int(extra.get("bad_rows", 0)),
        "undelivered": len(getattr(stats, "failed", ())),
    }


def _settings_or_default(name: str, value: Any) -> Any:
    if value is not None:
        return value
    try:
        return getattr(Settings(), name)
    except ValidationError:
        return Settings.model_fields[name].default


def _progress_lines(interval_s: float) -> Callable[..., None]:
    """An update that prints `stream: done/total ...` at most every `interval_s` seconds
    per stream, and once when the stream is done."""
    last: dict[str, float] = {}
    finished: set[str] = set()
    started: dict[str, float] = {}

    def update(stream: str, done: int, total: int, stats: Any = None, **extra: Any) -> None:
        now = time.monotonic()
        started.setdefault(stream, now)
        complete = done >= total
        if stream in finished or (
            not complete and now - last.get(stream, started[stream]) < interval_s
        ):
            return
        if complete and done == 0 and stream not in last:
            return  # nothing to do: the report says so
        last[stream] = now
        if complete:
            finished.add(stream)
        fields = _progress_fields(done, stats, extra)
        elapsed = now - started[stream]
        console.print(
            f"{datetime.now(UTC):%H:%M:%S} {label(stream)}: {done:,}/{total:,} "
            f"sent {fields['sent']:,} retries {fields['retries']:,} "
            f"rejected {fields['rejected']:,} undelivered {fields['undelivered']:,} "
            f"({elapsed:.0f} s)",
            highlight=False,
            soft_wrap=True,
        )

    return update


def _print_report(report: Any) -> None:
    # the run's line above the table, not its title: a title wraps at the table's width
    console.print(
        f"run {report.run_id} ({report.status}, {report.duration_s:.2f} s)",
        highlight=False,
        soft_wrap=True,
    )
    table = Table(
        caption="unchanged: delivered before, or the same as last sent; rejected: bad rows "
        "and items Connect refused (400); undelivered: retryable, `rejects replay` re-sends",
        caption_justify="left",
    )
    table.add_column("stream", no_wrap=True)
    table.add_column("would send" if report.dry_run else "sent", justify="right", no_wrap=True)
    table.add_column("unchanged", justify="right", no_wrap=True)
    table.add_column("rejected", justify="right", no_wrap=True)
    table.add_column("undelivered", justify="right", no_wrap=True)
    for name, counts in report.streams.items():
        table.add_row(
            label(name),
            f"{counts.sent:,}",
            f"{counts.unchanged:,}",
            f"{counts.rejected:,}",
            f"{getattr(counts, 'undelivered', 0):,}",
        )
    for name in report.streams_absent:
        table.add_row(label(name), "-", "-", "-", "-", style="dim")
    console.print(table)
    details = {
        "deduplicated": sum(c.deduplicated for c in report.streams.values()),
        "requests": report.requests,
        "retries": report.retries,
        "rate-limited": getattr(report, "rate_limited", 0),
        "identity conflicts": report.identity_conflicts,
        "identity cycles": report.identity_cycles,
    }
    console.print("  ".join(f"{k}: {v:,}" for k, v in details.items()), soft_wrap=True)
    if report.quality:
        console.print(
            "data quality: "
            + ", ".join(f"{k} {v}" for k, v in sorted(report.quality.items()) if v),
            soft_wrap=True,
        )
    if report.streams_failed:
        console.print(f"[red]not delivered: {', '.join(report.streams_failed)}[/]")


def _finish(report: Any) -> None:
    _print_report(report)
    if report.status != "succeeded":
        sys.exit(1)


@cli.command()
@click.option(
    "--streams",
    help="Comma-separated streams to run: aliases, users, groups, events, pages, screens "
    "(default: all).",
)
@click.option("--audience", help="Limit to the users of sql/audiences/NAME.sql or a .sql path.")
@click.option("--dry-run", is_flag=True, help="Send nothing; write what would be sent.")
@click.option(
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="With --dry-run: JSON Lines file of the payloads in send order.",
)
@click.option(
    "--full-refresh", is_flag=True, help="Ignore cursors and fingerprints: send all users."
)
@click.option("--rate-limit", type=float, help="Requests per second for the whole run.")
@click.option(
    "--partitions",
    type=int,
    default=1,
    show_default=True,
    help="Split users and events into P partitions run on a Dask cluster (scale-out).",
)
@click.option(
    "--dask-address",
    help="With --partitions: the Dask scheduler (tcp://host:8786); default: a local cluster.",
)
def sync(
    streams, audience, dry_run, output, full_refresh, rate_limit, partitions, dask_address
) -> None:
    """One incremental run: aliases, users, events, in that order."""
    from connect_sync.flows.pipeline import SyncOptions, check_partitioning

    if output and not dry_run:
        raise UsageProblem("--output goes with --dry-run")
    if dask_address and partitions < 2:
        raise UsageProblem("--dask-address goes with --partitions 2 or more")
    settings = _settings(rate_limit=rate_limit)
    options = SyncOptions(
        streams=_parse_streams(streams),
        full_refresh=full_refresh,
        dry_run=dry_run,
        output=output,
        audience=audience,
        partitions=partitions,
    )
    with _expected_failures():
        check_partitioning(settings, options)  # before any Prefect server or cluster starts
        report = _run(settings, options, dask_address)
    _finish(report)


class _Instant(click.ParamType):
    """An ISO 8601 date or time; without a zone it is UTC."""

    name = "DATE|TIME"

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            moment = datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "zZ" else text)
        except ValueError:
            self.fail(
                f"{value!r} is not a date or time: write 2026-10-01, 2026-10-01T08:00, "
                "or 2026-10-01T08:00:00Z / +02:00",
                param,
                ctx,
            )
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


_ZONE_HELP = "(ISO 8601 date or time; without a zone, UTC)"


@cli.command()
@click.option("--start", required=True, type=_Instant(), help=f"First received_at {_ZONE_HELP}.")
@click.option(
    "--end", required=True, type=_Instant(), help=f"End of the window, excluded {_ZONE_HELP}."
)
@click.option("--streams", help="Comma-separated streams (default: all).")
@click.option("--dry-run", is_flag=True)
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--audience", help="Limit to the users of sql/audiences/NAME.sql or a .sql path.")
def backfill(start: datetime, end: datetime, streams, dry_run, output, audience) -> None:
    """Re-send rows received in [start, end); delivered events are not sent again."""
    from connect_sync.flows.pipeline import SyncOptions
    from connect_sync.warehouse.segment import Window

    if end <= start:
        raise UsageProblem("--end must be after --start")
    options = SyncOptions(
        streams=_parse_streams(streams),
        dry_run=dry_run,
        output=output,
        backfill=Window("received_at", start, end),
        kind="backfill",
        audience=audience,
    )
    with _expected_failures():
        report = _run(_settings(), options)
    _finish(report)


@cli.command()
@click.option(
    "--users",
    default=2000,
    show_default=True,
    type=click.IntRange(min=1),
    help="How many people the demo warehouse holds.",
)
@click.option("--seed", default=7, show_default=True, type=int)
@click.option("--serve", is_flag=True, help="Keep the sandbox up until Ctrl-C.")
def demo(users: int, seed: int, serve: bool) -> None:
    """Build a demo warehouse, start the sandbox, sync into it, print the report."""
    from connect_sync.connect.sandbox.server import start_sandbox_process
    from connect_sync.flows.pipeline import SyncOptions, run_sync
    from connect_sync.warehouse.demo import build_demo_warehouse

    started = time.monotonic()
    with console.status(f"building the demo warehouse ({users} users)"):
        counts = build_demo_warehouse(DEMO_WAREHOUSE, users, seed)
    console.print(
        f"demo warehouse {DEMO_WAREHOUSE}: {counts.identifies} identifies, "
        f"{counts.aliases} aliases, {counts.tracks} tracks, {counts.pages} pages, "
        f"{counts.screens} screens, {counts.groups} groups"
    )
    api_key = SANDBOX_DEFAULT_KEY  # the local sandbox's own key, not a Connect secret
    sandbox_db = DEMO_DIR / "sandbox.sqlite"
    for stale in DEMO_DIR.glob("sandbox.sqlite*"):
        stale.unlink()
    with (
        _interrupted_by_sigterm(),
        start_sandbox_process(api_key, extra_args=["--db", str(sandbox_db)]) as sandbox,
    ):
        settings = Settings(
            warehouse_url=f"duckdb:///{DEMO_WAREHOUSE}",
            source_schema="segment",
            state_url=None,
            api_url=sandbox.api_url,
            api_key=api_key,
        )
        with _expected_failures(), _progress() as progress:
            report = run_sync(settings, SyncOptions(), progress)
        _print_report(report)
        stats = sandbox.stats()
        console.print(
            f"sandbox: {stats['users']} users, {stats['events']} events, "
            f"{stats['duplicate_events']} duplicates; total {time.monotonic() - started:.1f} s"
        )
        if serve:
            console.print(f"Events page: [bold]{sandbox.url}/[/]")
            console.print("serving; press Ctrl-C to stop")
            with suppress(KeyboardInterrupt):
                sandbox.process.wait()
        else:  # the sandbox stops with this command: say how to browse what it holds
            console.print(
                f"Events page: http://127.0.0.1:8765/ once you run "
                f"[bold]connect-sync sandbox --db {sandbox_db}[/] (or use demo --serve)",
                soft_wrap=True,
            )
    if report.status != "succeeded":
        sys.exit(1)


@contextmanager
def _interrupted_by_sigterm():
    """SIGTERM (a service manager, `kill`) stops like Ctrl-C, so the sandbox child stops."""
    import signal

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@cli.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8765, show_default=True, type=int)
@click.option("--api-key", envvar="CONNECT_API_KEY", default=SANDBOX_DEFAULT_KEY, show_default=True)
@click.option(
    "--db",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Keep everything in this SQLite file (reopened if it exists) instead of memory.",
)
@click.option("--error-rate", type=float, default=0.0, help="Fault: share answered 500/503.")
@click.option(
    "--rate-limit",
    "--rate-limit-per-s",
    "rate_limit_per_s",
    type=float,
    help="Fault: 429 with Retry-After above this many requests per second.",
)
@click.option("--latency-ms", type=float, default=0.0, help="Fault: added to every request.")
@click.option("--drop-rate", type=float, default=0.0, help="Fault: share of dropped connections.")
@click.option("--fault-seed", type=int, help="Seed for a reproducible sequence of faults.")
def sandbox(
    host: str,
    port: int,
    api_key: str,
    db: Path | None,
    error_rate: float,
    rate_limit_per_s: float | None,
    latency_ms: float,
    drop_rate: float,
    fault_seed: int | None,
) -> None:
    """Run the local Connect API server (Events page at /, faults via /_sandbox/faults)."""
    from connect_sync.connect.sandbox.faults import Faults
    from connect_sync.connect.sandbox.server import serve
    from connect_sync.connect.sandbox.store import StoreError
    from connect_sync.connect.sandbox.validation import ValidationError as FaultError

    try:
        faults = Faults.from_dict(
            {
                "error_rate": error_rate,
                "rate_limit_per_s": rate_limit_per_s,
                "latency_ms": latency_ms,
                "drop_rate": drop_rate,
                "seed": fault_seed,
            }
        )
    except FaultError as exc:
        raise UsageProblem(exc.message) from None
    try:
        serve(host, port, api_key, db=db, faults=faults)
    except StoreError as exc:
        raise UsageProblem(str(exc)) from None
    except OSError as exc:
        raise UsageProblem(f"cannot listen on {host}:{port}: {exc.strerror}") from None


@cli.command()
def status() -> None:
    """Cursors per stream, the last runs, pending rejections by stream and reason."""
    settings = _settings()
    store = _state_store(settings, must_exist=True)
    console.print(f"books of {settings.source_schema} -> {_destination(settings)}", soft_wrap=True)
    cursors = Table(title="cursors")
    cursors.add_column("stream")
    cursors.add_column("position")
    for stream, position in sorted(store.cursors().items()):
        cursors.add_row(stream, position.isoformat())
    console.print(cursors)
    runs = Table(title="last runs")
    for column in ("run", "kind", "started", "status", "sent"):
        runs.add_column(column)
    import orjson

    for run in store.recent_runs():
        report = orjson.loads(run["report"]) if run["report"] else {}
        runs.add_row(
            run["run_id"][:12],
            run["kind"],
            str(run["started_at"])[:19],
            run["status"],
            _sent_cell(report),
        )
    console.print(runs)
    summary = store.rejection_summary()
    if not summary:
        console.print("rejections: none pending")
        return
    table = Table(title="pending rejections (`rejects list` shows them)")
    for column, justify in (("stream", "left"), ("reason", "left"), ("retryable", "left")):
        table.add_column(column, justify=justify)  # type: ignore[arg-type]
    table.add_column("count", justify="right")
    grouped: dict[tuple[str, str, bool], int] = {}
    for stream, reason, retryable, count in summary:
        key = (label(stream), short_reason(reason), bool(retryable))
        grouped[key] = grouped.get(key, 0) + int(count)
    for (stream, reason, retryable), count in sorted(grouped.items()):
        table.add_row(stream, reason, "yes" if retryable else "no", f"{count:,}")
    console.print(table)


def _sent_cell(report: dict[str, Any]) -> str:
    """What a stored run sent, per stream (`users 10, events 200`), for any kind of run."""
    streams = report.get("streams") or {}
    if streams:
        return ", ".join(
            f"{label(name)} {int(counts.get('sent', 0)):,}" for name, counts in streams.items()
        )
    if "sent" in report:  # a replay
        return f"{int(report['sent']):,} replayed"
    return "-"


def _destination(settings: Settings) -> str:
    """The destination as `status` and `reset` name it: its URL and key hash, no key."""
    return f"{settings.api_url} (destination {settings.destination_id})"


@cli.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def reset(yes: bool) -> None:
    """Forget what was delivered from this source schema to this Connect destination
    (cursors, delivered ids, fingerprints, rejections): the next sync sends everything."""
    from connect_sync.warehouse.destinations import forget_books, forget_journal
    from connect_sync.warehouse.journal import journal_directory

    settings = _settings()
    store = _state_store(settings, must_exist=True)
    where = f"{settings.source_schema} -> {_destination(settings)}"
    if not yes and not click.confirm(
        f"forget every cursor, delivered id, fingerprint and rejection of {where}?"
    ):
        raise UsageProblem("reset cancelled: nothing forgotten")
    deleted = forget_books(store)
    forget_journal(
        journal_directory(
            settings.effective_state_url,
            settings.state_schema,
            settings.books_key,
            settings.journal_dir,
        )
    )
    console.print(
        f"reset {where}: " + ", ".join(f"{n} {name}" for name, n in deleted.items()),
        soft_wrap=True,
    )


@cli.group()
def rejects() -> None:
    """Recorded rejections."""


def _state_store(settings: Settings, *, must_exist: bool = False) -> Any:
    """The state store of this (source, destination); with `must_exist`, a state database
    that is not there yet is a one-line error naming the state setting."""
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.state import StateStore

    if must_exist:
        _check_state_exists(settings)
    with _expected_failures():
        store = StateStore(
            create_engine(
                settings.effective_state_url,
                connect_args=settings.engine_args(settings.effective_state_url),
            ),
            settings.state_schema,
            settings.books_key,
        )
        store.migrate()
    return store


def _check_state_exists(settings: Settings) -> None:
    from sqlalchemy.engine import make_url

    try:
        url = make_url(settings.effective_state_url)
    except Exception:
        return  # create_engine says what is wrong with it
    if url.get_backend_name() != "duckdb" or url.database in (None, "", ":memory:"):
        return
    if not Path(url.database).exists():
        setting = (
            "CONNECT_SYNC_STATE_URL"
            if settings.state_url
            else ("CONNECT_SYNC_STATE_URL (default: the warehouse, CONNECT_SYNC_WAREHOUSE_URL)")
        )
        raise UsageProblem(
            f"no sync state yet: {url.database} does not exist. Run `connect-sync sync` "
            f"first, or point {setting} at the state of an earlier sync"
        )


@rejects.command("list")
@click.option("--limit", default=50, show_default=True, help="Show the latest N.")
@click.option("--pending", is_flag=True, help="Only those not replayed yet.")
@click.option("--retryable", is_flag=True, help="Only those `rejects replay` would re-send.")
def rejects_list(limit: int, pending: bool, retryable: bool) -> None:
    """Show recorded rejections with their reasons."""
    store = _state_store(_settings(), must_exist=True)
    frame = store.rejections(retryable_only=retryable, pending_only=pending)
    table = Table(title=f"rejections ({len(frame)})")
    for column in ("stream", "message_id", "user_id"):
        table.add_column(column)
    table.add_column("reason", min_width=20)  # the one column never squeezed out
    for column in ("run", "retryable", "replayed"):
        table.add_column(column)
    for row in frame.tail(limit).itertuples():
        table.add_row(
            label(row.stream),
            _cell(row.message_id),
            _cell(row.user_id),
            row.reason,
            str(row.run_id)[:8],
            "yes" if row.retryable else "no",
            "" if _cell(row.replayed_at) == "" else "yes",
        )
    console.print(table)


def _cell(value: Any) -> str:
    """A stored value as table text; missing (None, NaN, NaT, NA) is empty, never `nan`."""
    import pandas as pd

    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return ""
    return str(value)


@rejects.command("replay")
@click.option("--rate-limit", type=float, help="Requests per second for the replay.")
def rejects_replay(rate_limit: float | None) -> None:
    """Re-send the retryable rejections not delivered since; mark them replayed."""
    from connect_sync.flows.replay import replay_rejections

    settings = _settings(rate_limit=rate_limit)
    if not settings.api_key_value():
        raise UsageProblem(
            "CONNECT_API_KEY is not set: give the private key of the Connect environment"
        )
    with _expected_failures(), _progress() as progress:
        report = replay_rejections(settings, progress)
    console.print(
        f"replay: {report.pending} pending, {report.sent} sent, "
        f"{report.already_delivered} already delivered, {report.rejected} refused again, "
        f"{report.failed} still failing, {report.not_replayable} not replayable"
    )
    if report.status != "succeeded":
        sys.exit(1)


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="connect-sync", standalone_mode=True)


run_command: Callable[..., None] = main
__all__ = ["DEMO_DIR", "cli", "main"]
