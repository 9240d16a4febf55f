"""What a run did, counted: the run report, one row of counts per stream."""

from __future__ import annotations

import re
import time
from collections import Counter
from dataclasses import asdict, dataclass, field, fields
from typing import Any

#: The report's name of a stream where it differs (an alias call is a merge).
LABELS = {"aliases": "merges"}
#: Older names of a count, still read (`events_already_delivered`).
SYNONYMS = {"already_delivered": "unchanged"}


@dataclass
class StreamCounts:
    """One stream's counts in a run."""

    #: Rows read in the window (message streams) and how many repeated a message id.
    read: int = 0
    deduplicated: int = 0
    #: Payloads built and compared with the last delivered one (change-detected streams).
    considered: int = 0
    sent: int = 0
    #: Not sent: delivered before (message streams) or unchanged since (profiles).
    unchanged: int = 0
    #: Rows or items that cannot be sent (a bad row, a 400), recorded with their reason.
    rejected: int = 0
    #: Items not delivered after every retry, or never tried: recorded as retryable
    #: rejections (`rejects list --retryable`) that `rejects replay` re-sends.
    undelivered: int = 0

    def add(self, other: StreamCounts | dict[str, Any]) -> None:
        for f in fields(self):
            value = other.get(f.name) if isinstance(other, dict) else getattr(other, f.name)
            setattr(self, f.name, getattr(self, f.name) + int(value or 0))


def label(stream: str) -> str:
    return LABELS.get(stream, stream)


_RETRIES = re.compile(r" \(after \d+ retries\)$")


def short_reason(reason: str, width: int = 40) -> str:
    """A rejection reason as a short category: `HTTP 400: name too long (after 2 retries)`
    -> `HTTP 400`; `missing_user_id` as it is; long text cut to `width`."""
    text = _RETRIES.sub("", str(reason)).strip()
    head = text.split(": ", 1)[0] if text.startswith(("HTTP ", "Http")) else text
    return head if len(head) <= width else head[: width - 1] + "…"


@dataclass
class RunReport:
    run_id: str = ""
    source_schema: str = ""
    kind: str = "sync"
    dry_run: bool = False
    status: str = "running"
    started: float = field(default_factory=time.time)
    duration_s: float = 0.0
    #: Per stream (registry name), in the order the streams ran.
    streams: dict[str, StreamCounts] = field(default_factory=dict)
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
    #: Streams whose table the source schema does not have (nothing to do).
    streams_absent: list[str] = field(default_factory=list)
    error: str | None = None

    def stream(self, name: str) -> StreamCounts:
        """The counts of stream `name`, created on first use."""
        return self.streams.setdefault(name, StreamCounts())

    def __getattr__(self, name: str) -> int:
        """`users_sent`, `merges_sent`, `events_already_delivered`: a stream's count by
        its report label (the names the CLI, `status` and stored reports use)."""
        head, _, tail = name.partition("_")
        stream = {v: k for k, v in LABELS.items()}.get(head, head)
        count = SYNONYMS.get(tail, tail)
        if name.startswith("__") or count not in {f.name for f in fields(StreamCounts)}:
            raise AttributeError(name)
        counts = self.__dict__.get("streams", {}).get(stream)
        return getattr(counts, count) if counts is not None else 0

    @property
    def rejected(self) -> int:
        return sum(c.rejected for c in self.streams.values())

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["quality"] = dict(self.quality)
        data["rejected_by_reason"] = dict(self.rejected_by_reason)
        for name, counts in self.streams.items():  # flat too: `users_sent`, `events_sent`
            for f in fields(counts):
                data[f"{label(name)}_{f.name}"] = getattr(counts, f.name)
        return data
