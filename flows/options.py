"""What a run is asked to do: its options, and the error for bad ones."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from connect_sync.warehouse.segment import Window


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
