"""What a run did, counted: the run report."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class RunReport:
    run_id: str = ""
    source_schema: str = ""
    kind: str = "sync"
    dry_run: bool = False
    status: str = "running"
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0
    merges_sent: int = 0
    merges_already_delivered: int = 0
    users_considered: int = 0
    users_sent: int = 0
    users_unchanged: int = 0
    users_rejected: int = 0
    events_read: int = 0
    events_deduplicated: int = 0
    events_already_delivered: int = 0
    events_sent: int = 0
    events_rejected: int = 0
    requests: int = 0
    retries: int = 0
    #: 429 answers: requests Connect asked to slow down (they were retried).
    rate_limited: int = 0
    #: Items neither acknowledged nor refused (failed after every retry, or never tried).
    undelivered: int = 0
    #: Acknowledgements of an interrupted earlier run, merged from the journal at start-up.
    acks_recovered: int = 0
    #: How the identity graph was had: `cached` (no new link since the last run),
    #: `updated` (new links resolved with the groups they touch) or `resolved` (all links).
    identity_graph: str = ""
    identity_links_read: int = 0
    identity_conflicts: int = 0
    identity_cycles: int = 0
    #: A few conflicts and cycles, one readable line each.
    identity_examples: list[str] = field(default_factory=list)
    #: Anonymous profiles delivered earlier, merged into their user once linked to one.
    profiles_folded: int = 0
    quality: Counter[str] = field(default_factory=Counter)
    rejected_by_reason: Counter[str] = field(default_factory=Counter)
    streams_failed: list[str] = field(default_factory=list)
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["quality"] = dict(self.quality)
        data["rejected_by_reason"] = dict(self.rejected_by_reason)
        return data
