"""A local cache of the resolved identity graph and the links it was resolved from.

Kept beside the acknowledgement journal as Arrow IPC files plus a `meta.json` naming, per
link kind, how far the links were read (`LinkMark`). It is only a cache: a missing,
unreadable or foreign one means the next run reads and resolves every link again.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc
from connect_sync.warehouse.frames import arrow_to_frame

log = logging.getLogger(__name__)

FORMAT = 1
#: The Arrow tables a graph is kept as (`transforms.identity.graph_tables`).
GRAPH_TABLES = ("graph", "groups")


@dataclass(frozen=True)
class LinkMark:
    """How far one kind of link was read: every row loaded up to `until`, `rows` rows."""

    until: datetime
    rows: int


@dataclass
class CachedIdentities:
    links: pd.DataFrame
    #: The resolved graph as Arrow tables (`graph`, `groups`): the cache does not read them.
    graph: dict[str, pa.Table]
    marks: dict[str, LinkMark]


class IdentityCache:
    """The cached graph of one source schema in one warehouse (`source` names both)."""

    def __init__(self, directory: Path, source: str) -> None:
        self.directory = Path(directory)
        self.source = source

    def load(self) -> CachedIdentities | None:
        """The cached graph, or None when there is none (or it is unusable)."""
        meta_path = self.directory / "meta.json"
        if not meta_path.exists():
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if meta.get("format") != FORMAT or meta.get("source") != self.source:
                return None
            tables = {name: self._read(name, meta["token"]) for name in ("links", *GRAPH_TABLES)}
        except (OSError, ValueError, KeyError, pa.ArrowException) as error:
            log.warning(
                "identity cache in %s unreadable (%s): resolving again", self.directory, error
            )
            return None
        if any(table is None for table in tables.values()):
            return None
        marks = {
            kind: LinkMark(datetime.fromisoformat(mark["until"]), int(mark["rows"]))
            for kind, mark in meta["marks"].items()
        }
        graph = {name: tables[name] for name in GRAPH_TABLES}
        return CachedIdentities(arrow_to_frame(tables["links"]), graph, marks)

    def save(self, cached: CachedIdentities) -> None:
        """Replace the cache: each file is written aside and renamed, meta.json last (it
        names the token the other files must carry)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        token = uuid.uuid4().hex
        links = pa.Table.from_pandas(cached.links, preserve_index=False)
        self._write("links", links, token)
        for name in GRAPH_TABLES:
            self._write(name, cached.graph[name], token)
        meta = {
            "format": FORMAT,
            "source": self.source,
            "token": token,
            "marks": {
                kind: {"until": mark.until.isoformat(), "rows": mark.rows}
                for kind, mark in cached.marks.items()
            },
        }
        _replace(self.directory / "meta.json", json.dumps(meta, indent=1).encode())

    def clear(self) -> None:
        (self.directory / "meta.json").unlink(missing_ok=True)

    def _read(self, name: str, token: str) -> pa.Table | None:
        with ipc.open_file(pa.memory_map(str(self.directory / f"{name}.arrow"))) as reader:
            table = reader.read_all()
        stored = (table.schema.metadata or {}).get(b"token", b"").decode()
        return table if stored == token else None  # a file of another save: not ours

    def _write(self, name: str, table: pa.Table, token: str) -> None:
        """Written aside, then renamed over the old file. Not fsynced: a file cut short by
        a crash fails to read or carries another token, and the cache is rebuilt."""
        table = table.replace_schema_metadata({"token": token})
        path = self.directory / f"{name}.arrow"
        aside = _aside(path)
        with pa.OSFile(str(aside), "wb") as sink, ipc.new_file(sink, table.schema) as writer:
            writer.write_table(table)
        os.replace(aside, path)


def _aside(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _replace(path: Path, data: bytes) -> None:
    aside = _aside(path)
    aside.write_bytes(data)
    os.replace(aside, path)
