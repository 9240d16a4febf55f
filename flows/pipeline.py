"""The sync pipeline: warehouse -> transforms -> Connect, one stage per registered stream.

Plain Python with no Prefect import: the CLI runs it directly, and `flows.sync` wraps the
same stages as Prefect tasks. One pipeline, two entry points. The job (flows.job) runs the
streams of the registry (flows.streams); this module holds the entry points: a whole run,
and one partition of a partitioned run.
"""

from __future__ import annotations

import time
from typing import Any

from connect_sync.flows.books import PartitionResult
from connect_sync.flows.context import ProgressCallback
from connect_sync.flows.job import SharedContext, SyncJob
from connect_sync.flows.options import (
    ConfigurationError,
    SyncOptions,
    check_options,
    check_partitioning,
    client_config,
)
from connect_sync.flows.report import RunReport
from connect_sync.flows.streams import CURSOR_TABLES, NAMES

from connect_sync.settings import Settings

#: Stream names in run order (the registry's).
STREAMS = NAMES

#: Report counters (not per stream) a partition adds to its run's report.
_SUMMED = ("requests", "retries", "rate_limited", "undelivered", "acks_recovered")


def stages_for(options: SyncOptions) -> list[str]:
    """Streams to run, in registry order (merges before profiles before events)."""
    from connect_sync.flows.streams import stages_for as streams_for

    return [s.name for s in streams_for(options.streams)]


def merge_reports(into: RunReport, part: dict[str, Any]) -> None:
    """Add a partition's report (as_dict) to the run's."""
    for name in _SUMMED:
        setattr(into, name, getattr(into, name) + int(part.get(name) or 0))
    for stream, counts in (part.get("streams") or {}).items():
        into.stream(stream).add(counts)
    into.quality.update(part.get("quality") or {})
    into.rejected_by_reason.update(part.get("rejected_by_reason") or {})
    for stream in part.get("streams_failed") or []:
        if stream not in into.streams_failed:
            into.streams_failed.append(stream)


def settle_partitions(job: SyncJob, results: list[PartitionResult]) -> None:
    """The coordinating job: add up the partitions' reports and move each partitioned
    stream's cursor once every partition settled it."""
    assert job.books is not None
    partitioned = [s for s in stages_for(job.options) if s != "aliases"]
    job.books.settle_partitions(
        {s: CURSOR_TABLES[s] for s in partitioned},
        job.options.partitions,
        results,
        merge_reports,
    )


def run_partition(
    settings: Settings, options: SyncOptions, shared: SharedContext | bytes
) -> PartitionResult:
    """One partition of a partitioned run (what each Dask task runs): the partitioned
    streams of the canonical users hashed to `options.partition`. Moves no cursor and
    finishes no run row: the coordinating job does both once every partition is back."""
    import pickle

    from connect_sync.flows.streams import BY_NAME

    if isinstance(shared, bytes):
        shared = pickle.loads(shared)  # our own coordinating job's bytes
    assert isinstance(shared, SharedContext) and options.partition is not None
    job = SyncJob(settings, options)
    wall, cpu = time.monotonic(), time.process_time()
    try:
        job.prepare(shared)
        for stream in stages_for(options):
            if BY_NAME[stream].partitioned:
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


__all__ = [
    "STREAMS",
    "ConfigurationError",
    "PartitionResult",
    "SharedContext",
    "SyncJob",
    "SyncOptions",
    "check_options",
    "check_partitioning",
    "client_config",
    "merge_reports",
    "run_partition",
    "run_sync",
    "settle_partitions",
    "stages_for",
]
