"""What a run is asked to do: its options, the checks that refuse bad ones, and the
delivery client's configuration from the settings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connect_sync.connect.client import ClientConfig
from connect_sync.warehouse.segment import Window

from connect_sync.settings import Settings


class ConfigurationError(Exception):
    """Bad usage or configuration: exit 2 with this message."""


@dataclass
class SyncOptions:
    #: Stream names to run (`flows.streams.NAMES`); None: every stream.
    streams: tuple[str, ...] | None = None
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

    @property
    def subset(self) -> bool:
        """Whether the run reads a subset of the rows due (a backfill window, an audience,
        a partition): such a run moves no cursor."""
        return self.backfill is not None or bool(self.audience) or self.partition is not None


def check_options(settings: Settings, options: SyncOptions) -> None:
    """Refuse what the run cannot do, with a one-line reason (exit 2), before any work."""
    from connect_sync.flows.streams import NAMES  # these two import this module
    from connect_sync.flows.urls import check_urls

    check_urls(settings)

    unknown = set(options.streams or ()) - set(NAMES)
    if unknown:
        raise ConfigurationError(
            f"unknown stream {', '.join(sorted(unknown))}: choose from {', '.join(NAMES)}"
        )
    if not options.dry_run and not settings.api_key_value():
        raise ConfigurationError(
            "CONNECT_API_KEY is not set: give the private key of the Connect environment "
            "(or use --dry-run)"
        )
    check_partitioning(settings, options)


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
