"""Partitioned runs: the users and events of a run spread over a Dask cluster by Prefect.

The coordinating job (in the flow's process) checks the warehouse, starts the run, resolves
the identity graph once and sends every merge (the aliases stage): merges come before any
identify or track. It then maps the partitions over a Prefect `DaskTaskRunner` (a temporary
local cluster, or an existing one at `dask_address`): each Dask task builds its own
`SyncJob` from picklable inputs (settings, options with its partition, the pickled shared
context), opens its own engines, journal and Connect client, and sends users then events
of the canonical users hashed to it. When every partition is back, the coordinating job
adds up their reports and moves each stream's cursor, only if every partition settled it.

The Connect rate limit is one schedule in the PostgreSQL state store that every worker
books its request slots from (`warehouse.ratelimit`), so adding workers never multiplies it.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from connect_sync.flows.pipeline import (
    PartitionResult,
    SyncJob,
    SyncOptions,
    run_partition,
    settle_partitions,
    stages_for,
)
from connect_sync.flows.report import RunReport
from connect_sync.flows.streams import BY_NAME
from prefect import task
from prefect.cache_policies import NO_CACHE

from connect_sync.settings import Settings

log = logging.getLogger(__name__)

#: The temporary local cluster: one single-threaded worker process per core of this machine.
LOCAL_CLUSTER = {"n_workers": 2, "threads_per_worker": 1, "processes": True}


@task(
    name="partition",
    cache_policy=NO_CACHE,
    task_run_name="partition-{partition}",
    retries=1,
    retry_delay_seconds=5,
)
def partition_task(
    settings: Settings, options: SyncOptions, partition: int, shared: bytes
) -> PartitionResult:
    """One partition: users then events of its canonical users; safe to retry (what was
    acknowledged is never sent again)."""
    return run_partition(settings, replace(options, partition=partition), shared)


@contextmanager
def prefect_api(startup_timeout_s: int = 120) -> Iterator[str]:
    """The Prefect API of a partitioned run: the configured one, else one temporary server
    for the flow and every Dask worker (exported as PREFECT_API_URL, so local workers
    spawned meanwhile report to it instead of each starting a server of their own)."""
    import prefect.settings
    from prefect.server.api.server import SubprocessASGIServer

    configured = prefect.settings.PREFECT_API_URL.value()
    if configured:
        yield configured
        return
    server = SubprocessASGIServer()
    # a server that lives for one run sends no telemetry (its heartbeat races the run for
    # the server's SQLite file and logs a traceback when it loses)
    with prefect.settings.temporary_settings(
        updates={prefect.settings.PREFECT_SERVER_ANALYTICS_ENABLED: False}
    ):
        server.start(timeout=startup_timeout_s)
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = server.api_url
    try:
        with prefect.settings.temporary_settings(
            updates={prefect.settings.PREFECT_API_URL: server.api_url}
        ):
            yield server.api_url
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous
        _drain_to(server.api_url)
        server.stop()


def _drain_to(api_url: str) -> None:
    """Send the logs and events still queued for the temporary server before it stops
    (else the process spends a minute at exit retrying a server that is gone)."""
    import prefect.settings
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with prefect.settings.temporary_settings(updates={prefect.settings.PREFECT_API_URL: api_url}):
        for worker in (APILogWorker, EventsWorker):
            try:
                worker.drain_all(timeout=10)
            except Exception as exc:  # pragma: no cover - best effort at shutdown
                log.debug("could not drain %s: %s", worker.__name__, exc)


def dask_task_runner(dask_address: str | None = None, local_workers: int = 2) -> Any:
    """A DaskTaskRunner on the cluster at `dask_address`, else on a temporary local one."""
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError as exc:  # pragma: no cover - the dask extra is missing
        from connect_sync.flows.pipeline import ConfigurationError

        raise ConfigurationError(
            "--partitions needs prefect-dask: pip install -e '.[dask]'"
        ) from exc
    if dask_address:
        return DaskTaskRunner(address=dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        # dashboard on a free port (None still binds 8787, and warns when it is taken)
        cluster_kwargs={**LOCAL_CLUSTER, "n_workers": local_workers, "dashboard_address": ":0"},
    )


def run_partitioned(
    settings: Settings,
    options: SyncOptions,
    dask_address: str | None = None,
    local_workers: int = 2,
    timings: dict[str, float] | None = None,
) -> RunReport:
    """A run split into `options.partitions` Dask tasks (call it inside a Prefect flow).

    `timings`, if given, receives the seconds of each phase: `coordinator` (set-up,
    identities, merges), `cluster` (starting or joining the Dask cluster) and `partitions`.
    """
    timings = {} if timings is None else timings
    started = time.monotonic()
    job = SyncJob(settings, replace(options, partition=None))
    try:
        job.prepare()
        for stream in stages_for(options):  # the coordinator's own (merges)
            if not BY_NAME[stream].partitioned:
                job.run_stage(stream)
        if "aliases" in job.report.streams_failed:
            # merges must land before identifies: the partitions wait for the next run
            return job.finish()
        shared = pickle.dumps(job.shared_context(), protocol=pickle.HIGHEST_PROTOCOL)
        results: list[PartitionResult] = []
        timings["coordinator"] = time.monotonic() - started
        with dask_task_runner(dask_address, local_workers) as runner:
            timings["cluster"] = time.monotonic() - started - timings["coordinator"]
            mapped = time.monotonic()
            futures = [
                runner.submit(
                    partition_task,
                    parameters={
                        "settings": settings,
                        "options": options,
                        "partition": p,
                        "shared": shared,
                    },
                )
                for p in range(options.partitions)
            ]
            for p, future in enumerate(futures):
                try:
                    results.append(future.result())
                except Exception as exc:  # the others still finish and record their acks
                    log.error("partition %s of %s failed: %s", p, options.partitions, exc)
            timings["partitions"] = time.monotonic() - mapped
        if results:
            timings["partition_cpu_max"] = max(r.cpu_s for r in results)
            timings["partition_cpu_sum"] = sum(r.cpu_s for r in results)
        log.info("partitioned run phases (s): %s", {k: round(v, 2) for k, v in timings.items()})
        settle_partitions(job, results)
    except BaseException as exc:
        job.finish(exc)
        raise
    return job.finish()
