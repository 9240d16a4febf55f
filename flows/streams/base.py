"""What a stream is: the rows of one Segment table, turned into one kind of Connect call.

A stream declares what it reads and what it books as data; `run` does the work for one
run and returns its result; the job (flows.job) settles that result through the books.
A stream never writes state itself: it hands its acknowledgements, rejections and side
records to `context.books`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar

from connect_sync.connect.client import DeliveryStats

if TYPE_CHECKING:
    from connect_sync.flows.context import RunContext
    from connect_sync.warehouse.segment import SegmentSource


@dataclass
class StreamResult:
    """A stream's run: the newest row it handled (its cursor's next position, None when
    it read nothing) and how its delivery went."""

    newest: datetime | None = None
    stats: DeliveryStats = field(default_factory=DeliveryStats)


class Stream(ABC):
    """One stream (see the module docstring). Subclasses set the class attributes."""

    #: Its name: `--streams` choices, report rows, rejections' `stream` column.
    name: ClassVar[str]
    #: The Segment table it reads; without it the stream has nothing to do.
    table: ClassVar[str]
    #: The Connect endpoint its items go to: `identify` or `track`.
    endpoint: ClassVar[str]
    #: What it books per delivered item: a message-id book (`event`, `alias`), or None
    #: for payload fingerprints (change detection by key).
    book: ClassVar[str | None] = None
    #: Whether its refused items are recorded by key as `message_id` (else `user_id`).
    keyed_by_message: ClassVar[bool] = True
    #: Whether partitions run it (each for its own users); False: the coordinating job
    #: runs it once, before the partitions (merges must land before anything else).
    partitioned: ClassVar[bool] = True
    #: Streams that must run before it in the same run (a profile must not be written
    #: before the merge that moves it).
    needs: ClassVar[tuple[str, ...]] = ()
    #: Whether it reads the identity links (`context.links`).
    reads_links: ClassVar[bool] = False

    def available(self, source: SegmentSource) -> bool:
        """Whether the source has what the stream reads (a missing table: nothing to do)."""
        return source.has(self.table)

    @property
    def cursor_table(self) -> str:
        """The warehouse table whose load time (`uuid_ts`) its cursor follows."""
        return self.table

    @abstractmethod
    def run(self, context: RunContext) -> StreamResult:
        """Read, transform and send this run's rows; book through `context.books`."""
