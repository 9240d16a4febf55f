"""The registry: every stream, in the order a run takes them.

Merges come first (so Connect has merged profiles before anything lands on them), then
profiles (users, groups), then events. Cursors, `--streams` choices, the report's rows and
`rejects replay` derive from this list: adding a stream is a module, its SQL and transform,
and one line here.
"""

from __future__ import annotations

from connect_sync.flows.streams.aliases import AliasesStream
from connect_sync.flows.streams.base import Stream, StreamResult
from connect_sync.flows.streams.calls import CallsStream
from connect_sync.flows.streams.events import EventsStream
from connect_sync.flows.streams.groups import GroupsStream
from connect_sync.flows.streams.users import UsersStream

STREAMS: tuple[Stream, ...] = (
    AliasesStream(),
    UsersStream(),
    GroupsStream(),
    EventsStream(),
    CallsStream("pages"),
    CallsStream("screens"),
)
#: Stream names, in run order (the `--streams` choices).
NAMES = tuple(s.name for s in STREAMS)
BY_NAME = {s.name: s for s in STREAMS}
#: The warehouse table behind each stream's cursor.
CURSOR_TABLES = {s.name: s.cursor_table for s in STREAMS}
#: Streams whose items are booked by message id, with their book (`rejects replay`).
BOOKS = {s.name: s.book for s in STREAMS if s.book}


def stages_for(names: tuple[str, ...] | None) -> list[Stream]:
    """Streams to run, in registry order, with the streams those need before them."""
    wanted = set(names or NAMES)
    wanted |= {need for s in STREAMS if s.name in wanted for need in s.needs}
    return [s for s in STREAMS if s.name in wanted]


__all__ = ["BOOKS", "BY_NAME", "CURSOR_TABLES", "NAMES", "STREAMS", "Stream", "StreamResult"]
