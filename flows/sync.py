"""Prefect flows: the same pipeline stages as `flows.pipeline`, run as Prefect tasks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from connect_sync.settings import Settings
from flows.pipeline import SyncJob, SyncOptions, stages_for


@task(name="stage", cache_policy=NO_CACHE, task_run_name="{stream}")
def run_stage(job: SyncJob, stream: str) -> None:
    job.run_stage(stream)


@task(name="prepare", cache_policy=NO_CACHE)
def prepare(job: SyncJob) -> None:
    job.prepare()


def run_job(settings: Settings, options: SyncOptions) -> dict[str, Any]:
    job = SyncJob(settings, options)
    try:
        prepare(job)
        for stream in stages_for(options):
            run_stage(job, stream)
    except BaseException as exc:
        job.finish(exc)
        raise
    report = job.finish()
    get_run_logger().info("run %s: %s", report.run_id, report.as_dict())
    if report.status != "succeeded":
        raise RuntimeError(f"run {report.run_id} failed: streams {report.streams_failed}")
    return report.as_dict()


@flow(name="connect-sync", flow_run_name="sync-{source_schema}")
def sync(
    source_schema: str | None = None,
    streams: list[str] | None = None,
    full_refresh: bool = False,
    dry_run: bool = False,
    output: str | None = None,
    rate_limit: float | None = None,
) -> dict[str, Any]:
    """One incremental run: aliases, users, then events. Settings come from the environment;
    parameters override them."""
    overrides: dict[str, Any] = {}
    if source_schema:
        overrides["source_schema"] = source_schema
    if rate_limit:
        overrides["rate_limit"] = rate_limit
    settings = Settings(**overrides)
    options = SyncOptions(
        streams=tuple(streams or ("aliases", "users", "events")),
        full_refresh=full_refresh,
        dry_run=dry_run,
        output=Path(output) if output else None,
    )
    return run_job(settings, options)


@flow(name="connect-sync-cli", flow_run_name="{options.kind}-{settings.source_schema}")
def run_job_flow(settings: Settings, options: SyncOptions):
    """The CLI's entry point when a Prefect API is configured: the run shows up in Prefect."""
    job = SyncJob(settings, options)
    try:
        prepare(job)
        for stream in stages_for(options):
            run_stage(job, stream)
    except BaseException as exc:
        job.finish(exc)
        raise
    return job.finish()
