"""Prefect flows: the same pipeline stages as `flows.pipeline`, run as Prefect tasks.

`sync` is the scheduled incremental run, `backfill` re-reads a window of `received_at`;
`run_job_flow` is what the CLI runs when a Prefect API is configured. All three run one
`SyncJob`, stage by stage, so no pipeline logic lives here.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from connect_sync.connect.errors import ConnectConfigurationError
from connect_sync.flows.pipeline import (
    STREAMS,
    ConfigurationError,
    SyncJob,
    SyncOptions,
    stages_for,
)
from connect_sync.flows.report import RunReport, label
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.segment import Window
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run
from pydantic import BaseModel, Field, model_serializer

from connect_sync.secrets import mask_secrets
from connect_sync.settings import Settings

#: Failures a retry cannot fix: bad key, bad configuration, missing tables.
PERMANENT = (ConnectConfigurationError, ConfigurationError, WarehouseError)


def _retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    try:
        state.result()
    except PERMANENT:
        return False
    except Exception:
        return True
    return False


@task(
    name="prepare",
    cache_policy=NO_CACHE,
    retries=2,
    retry_delay_seconds=10,
    retry_condition_fn=_retry_unless_permanent,
)
def prepare(job: SyncJob) -> None:
    """Check the warehouse, migrate the state store, resolve identities."""
    job.prepare()


@task(
    name="stage",
    cache_policy=NO_CACHE,
    task_run_name="{stream}",
    retries=2,
    retry_delay_seconds=30,
    retry_condition_fn=_retry_unless_permanent,
)
def run_stage(job: SyncJob, stream: str) -> None:
    """One stream; safe to retry: delivered items are never sent again."""
    job.run_stage(stream)


def report_rows(report: RunReport) -> list[dict[str, Any]]:
    """The run report as the rows of a Prefect table artifact: one per stream, then one
    per rejection reason."""
    rows = [
        {
            "stream": label(name),
            "sent": c.sent,
            "unchanged": c.unchanged,
            "rejected": c.rejected,
            "undelivered": c.undelivered,
        }
        for name, c in report.streams.items()
    ]
    for reason, count in sorted(report.rejected_by_reason.items()):
        rows.append(
            {
                "stream": f"rejected: {reason}",
                "sent": 0,
                "unchanged": 0,
                "rejected": count,
                "undelivered": 0,
            }
        )
    return rows


def run_job(settings: Settings, options: SyncOptions, dask_address: str | None = None) -> RunReport:
    """Prepare and run each stage as a task (or, with partitions > 1, map the partitions
    over a Dask cluster); the report becomes a table artifact."""
    if options.partitions > 1:
        from connect_sync.flows.partitioned import run_partitioned

        report = run_partitioned(settings, options, dask_address)
    else:
        job = SyncJob(settings, options)
        try:
            prepare(job)
            for stream in stages_for(options):
                run_stage(job, stream)
        except ConnectConfigurationError as exc:  # a bad key: say where the key came from
            error = type(exc)(_key_source(str(exc), settings.api_key_source))
            _publish(settings, job.finish(error))
            raise error from None
        except BaseException as exc:
            _publish(settings, job.finish(exc))  # a failed run leaves its artifact too
            raise
        report = job.finish()
    _publish(settings, report)
    get_run_logger().info(
        "run %s %s: %s users, %s events sent",
        report.run_id,
        report.status,
        report.users_sent,
        report.events_sent,
    )
    return report


def _publish(settings: Settings, report: RunReport) -> None:
    """The run report as a Prefect table artifact, whatever the run's outcome."""
    error = f"; {report.error}" if report.error else ""
    create_table_artifact(
        key=f"connect-sync-{settings.source_schema.replace('_', '-')}",
        table=report_rows(report),
        description=(
            f"{report.kind} of `{settings.source_schema}`: {report.status} in "
            f"{report.duration_s:.1f} s; {report.requests} requests, {report.retries} "
            f"retried{error}"
        ),
    )


def _key_source(message: str, source: str) -> str:
    """A key error's message naming where this run's key came from."""
    return message.replace("CONNECT_API_KEY", source)


def _settings(source_schema: str | None, api_key_secret: str | None, **extra: Any) -> Settings:
    """Settings from the environment; the Connect key from a Prefect Secret block if named."""
    overrides: dict[str, Any] = {k: v for k, v in extra.items() if v is not None}
    if source_schema:
        overrides["source_schema"] = source_schema
    if api_key_secret:
        from prefect.blocks.system import Secret

        overrides["api_key"] = Secret.load(api_key_secret).get()
        overrides["api_key_source"] = f"the Prefect Secret block {api_key_secret!r}"
    return Settings(**overrides)


def _run_name() -> str:
    """`backfill-<schema>-<start>-<end>`, or `sync-<schema>-<window>-to-<scheduled time>`
    (an incremental window runs from the cursors to the run's start)."""
    params = flow_run.parameters
    schema = params.get("source_schema") or "default"
    if params.get("start"):
        return f"backfill-{schema}-{params['start']:%Y%m%dT%H%M}-{params['end']:%Y%m%dT%H%M}"
    window = "full-refresh" if params.get("full_refresh") else "incremental"
    return f"sync-{schema}-{window}-to-{_scheduled():%Y%m%dT%H%MZ}"


def _cli_run_name() -> str:
    """The CLI flow's run name, with its window like the deployments' runs."""
    params = flow_run.parameters
    options, settings = params.get("options"), params.get("settings")
    settings = getattr(settings, "settings", settings)  # HiddenSettings holds them
    schema = getattr(settings, "source_schema", "default")
    kind = getattr(options, "kind", "sync")
    window = getattr(options, "backfill", None)
    if window is not None:
        return f"{kind}-{schema}-{window.since:%Y%m%dT%H%M}-{window.until:%Y%m%dT%H%M}"
    return f"{kind}-{schema}-incremental-to-{_scheduled():%Y%m%dT%H%MZ}"


def _scheduled() -> datetime:
    from datetime import UTC

    when = flow_run.scheduled_start_time
    return (when or datetime.now(UTC)).astimezone(UTC)


def _check_streams(streams: list[str] | None) -> tuple[str, ...]:
    chosen = tuple(streams or STREAMS)
    unknown = set(chosen) - set(STREAMS)
    if unknown:
        raise ValueError(f"unknown streams {sorted(unknown)}; choose from {list(STREAMS)}")
    return chosen


@flow(name="connect-sync", flow_run_name=_run_name, validate_parameters=True)
def sync(
    source_schema: str | None = None,
    api_key_secret: str | None = None,
    streams: list[str] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    output: str | None = None,
    audience: str | None = None,
    rate_limit: float | None = Field(default=None, gt=0),
    partitions: int = Field(default=1, ge=1),
    dask_address: str | None = None,
) -> dict[str, Any]:
    """One incremental run: aliases, users, then events. With `partitions` > 1, users and
    events are split by canonical user over a Dask cluster (`dask_address`, else a
    temporary local one); the rate limit stays one limit for the whole run."""
    settings = _settings(source_schema, api_key_secret, rate_limit=rate_limit)
    options = SyncOptions(
        streams=_check_streams(streams),
        full_refresh=full_refresh,
        dry_run=dry_run,
        output=Path(output) if output else None,
        audience=audience,
        partitions=partitions,
    )
    report = run_job(settings, options, dask_address)
    if report.status != "succeeded":
        raise RuntimeError(f"run {report.run_id} failed: {report.streams_failed}")
    return report.as_dict()


@flow(name="connect-sync-backfill", flow_run_name=_run_name, validate_parameters=True)
def backfill(
    start: datetime,
    end: datetime,
    source_schema: str | None = None,
    api_key_secret: str | None = None,
    streams: list[str] | None = None,
    dry_run: bool = False,
) -> dict[str, Any]:
    """Re-read rows received in [start, end); delivered events are not sent again."""
    if end <= start:
        raise ValueError("end must be after start")
    settings = _settings(source_schema, api_key_secret)
    options = SyncOptions(
        streams=_check_streams(streams),
        dry_run=dry_run,
        kind="backfill",
        backfill=Window("received_at", start, end),
    )
    report = run_job(settings, options)
    if report.status != "succeeded":
        raise RuntimeError(f"run {report.run_id} failed: {report.streams_failed}")
    return report.as_dict()


class RunFailed(RuntimeError):
    """A run that ended `failed`: the flow run ends Failed in Prefect, and the caller
    still gets the run's report (`report`)."""

    def __init__(self, report: RunReport) -> None:
        super().__init__(f"run {report.run_id} failed: {report.error or report.streams_failed}")
        self.report = report

    def __reduce__(self) -> tuple[Any, ...]:
        return (RunFailed, (self.report,))


class HiddenSettings(BaseModel):
    """The run's settings as a flow parameter. Prefect stores flow-run parameters (JSON of
    each, via `jsonable_encoder`): this one is stored with URL passwords and the API key
    hidden, while the flow itself gets the real settings."""

    settings: Settings

    @model_serializer
    def _stored(self) -> dict[str, Any]:
        return mask_secrets(self.settings.model_dump(mode="json"))


@flow(name="connect-sync-cli", flow_run_name=_cli_run_name)
def job_flow(
    settings: HiddenSettings, options: SyncOptions, dask_address: str | None = None
) -> RunReport:
    """One run as a Prefect flow run, Failed when the run failed (`RunFailed` carries its
    report); `settings` is stored with its secrets hidden."""
    report = run_job(settings.settings, options, dask_address)
    if report.status != "succeeded":
        raise RunFailed(report)
    return report


def run_job_flow(
    settings: Settings, options: SyncOptions, dask_address: str | None = None
) -> RunReport:
    """The CLI's entry point when a Prefect API is configured (or the run is partitioned):
    the run shows up in Prefect (Failed when it failed, its parameters without secrets);
    the run's report is returned either way."""
    try:
        return job_flow(HiddenSettings(settings=settings), options, dask_address)
    except RunFailed as failed:
        return failed.report
