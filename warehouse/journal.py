"""The acknowledgement journal: what Connect acknowledged, on local disk the moment it is.

Recording every acknowledged batch in the state database as it comes back would cost a
transaction per batch (a few thousand rows per second through SQLAlchemy). Instead each
acknowledgement is appended as one JSON line to a segment file with a single unbuffered
`write()`: no fsync is needed to survive the process being killed (even SIGKILL), since
the kernel keeps written data. Segments are merged into the state store in bulk (in the
background every `rotate_every` keys, and at every `checkpoint`), then deleted. A segment
left behind by a killed run is merged by the next run's `replay`, before it reads any
bookkeeping, so that run neither loses an acknowledged item nor sends it again.

Each live segment is held under an exclusive `flock`; `replay` skips segments another
live process holds, so concurrent runs on one machine never take each other's segments.
(A power cut may lose the last unflushed writes; those items are then sent again.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import itertools
import logging
import os
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import orjson
import pandas as pd
from connect_sync.warehouse.engine import describe
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.state import StateStore
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

SUFFIX = ".acks"
ROTATE_EVERY = 25_000  # keys per segment: bounds merge memory and GIL pauses


def journal_directory(
    state_url: str, state_schema: str, source_schema: str, base: Path | None = None
) -> Path:
    """Where the journal of one state store lives.

    `base` if given; next to a DuckDB state file (`<file>.journal/`); else under
    `$XDG_STATE_HOME/connect-sync/journal` (default `~/.local/state`). One sub-folder per
    (state database, state schema, source schema).
    """
    identity = f"{describe(state_url)}|{state_schema}|{source_schema}"
    key = f"{source_schema}-{hashlib.sha256(identity.encode()).hexdigest()[:16]}"
    if base is None:
        url = make_url(state_url)
        if url.get_backend_name() == "duckdb" and url.database not in (None, "", ":memory:"):
            db = Path(url.database)
            base = db.with_name(db.name + ".journal")
        else:
            state_home = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
            base = Path(state_home) / "connect-sync" / "journal"
    return Path(base) / key


class JournalError(WarehouseError):
    """The journal cannot be written (disk full, quota, permissions): the run fails with
    this one line; what Connect acknowledged and was not journaled is sent again."""

    @classmethod
    def of(cls, exc: OSError, path: Path) -> JournalError:
        return cls(
            f"cannot write the acknowledgement journal {path.parent}: "
            f"{exc.strerror or exc} (free space there, or set CONNECT_SYNC_JOURNAL_DIR)"
        )


class _Segment:
    """One open, locked, append-only segment file."""

    _seq = itertools.count()

    def __init__(self, directory: Path) -> None:
        stem = f"{time.time_ns():020d}-{os.getpid()}-{next(self._seq):06d}"
        temporary = directory / f".{stem}.tmp"
        self.path = directory / f"{stem}{SUFFIX}"
        try:
            self.fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
        except OSError as exc:
            raise JournalError.of(exc, temporary) from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.rename(temporary, self.path)  # visible to replay only once locked
        except OSError as exc:  # nothing of it is left behind
            self.close()
            temporary.unlink(missing_ok=True)
            raise JournalError.of(exc, temporary) from None
        self.keys = 0

    def append(self, line: bytes) -> None:
        view = memoryview(line)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as exc:  # a torn last line is ignored by replay
            raise JournalError.of(exc, self.path) from None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


class AckJournal:
    """Acknowledgements of one state store, journaled locally and merged in bulk."""

    def __init__(
        self, directory: Path, store: StateStore, rotate_every: int = ROTATE_EVERY
    ) -> None:
        self.directory = Path(directory)
        self.store = store
        self.rotate_every = rotate_every
        self._lock = threading.Lock()
        self._segment: _Segment | None = None
        self._merging: list[Future[int]] = []
        self._executor: ThreadPoolExecutor | None = None
        self.merged_keys = 0  # merged into the store so far, and the seconds it took
        self.merge_seconds = 0.0

    # -- recording ------------------------------------------------------------------------

    def delivered(self, kind: str, keys: Sequence[str], run_id: str) -> None:
        """Connect acknowledged these messages (`event`, `alias`)."""
        if keys:
            self._append(orjson.dumps(["d", kind, run_id, list(keys)]) + b"\n", len(keys))

    def fingerprints(self, pairs: Sequence[tuple[str, str]], run_id: str) -> None:
        """Connect acknowledged these user payloads: (user id, fingerprint) pairs."""
        if pairs:
            self._append(orjson.dumps(["f", run_id, [list(p) for p in pairs]]) + b"\n", len(pairs))

    def _append(self, line: bytes, keys: int) -> None:
        with self._lock:
            if self._segment is None:
                try:
                    self.directory.mkdir(parents=True, exist_ok=True)
                except OSError as exc:
                    raise JournalError.of(exc, self.directory / "-") from None
                self._segment = _Segment(self.directory)
            self._segment.append(line)
            self._segment.keys += keys
            if self._segment.keys >= self.rotate_every:
                full, self._segment = self._segment, None
                self._merging.append(self._pool().submit(self._merge_segment, full))

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(1, thread_name_prefix="ack-journal")
        return self._executor

    # -- merging --------------------------------------------------------------------------

    def checkpoint(self) -> int:
        """Merge everything journaled so far into the state store; returns keys merged.

        Raises if a merge failed (its segment stays on disk for the next run's replay).
        """
        with self._lock:
            current, self._segment = self._segment, None
            pending, self._merging = self._merging, []
        merged = 0
        errors: list[BaseException] = []
        for future in pending:
            try:
                merged += future.result()
            except Exception as exc:
                errors.append(exc)
        if current is not None:
            try:
                merged += self._merge_segment(current)
            except Exception as exc:
                errors.append(exc)
        if errors:
            raise errors[0]
        return merged

    def close(self) -> None:
        """Checkpoint, then release the background merger."""
        try:
            self.checkpoint()
        finally:
            if self._executor is not None:
                self._executor.shutdown(wait=True)
                self._executor = None

    def replay(self) -> int:
        """Merge segments left behind by earlier (killed) runs; returns keys merged."""
        if not self.directory.is_dir():
            return 0
        merged = 0
        for path in sorted(self.directory.glob(f"*{SUFFIX}")):
            try:
                fd = os.open(path, os.O_RDONLY)
            except FileNotFoundError:
                continue
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:  # a live run's segment
                os.close(fd)
                continue
            try:
                if not path.exists():  # merged and removed meanwhile
                    continue
                merged += self._merge_file(path)
            finally:
                os.close(fd)
        if merged:
            log.info("merged %s acknowledgements left by an interrupted run", merged)
        return merged

    def _merge_segment(self, segment: _Segment) -> int:
        try:
            return self._merge_file(segment.path)
        finally:
            segment.close()

    def _merge_file(self, path: Path) -> int:
        """Merge one segment into the store, then delete it (a failed merge keeps it)."""
        started = time.perf_counter()
        delivered, prints = parse_segment(path.read_bytes())
        merged = self.store.merge_delivered(delivered) + self.store.merge_fingerprints(prints)
        path.unlink(missing_ok=True)
        self.merged_keys += merged
        self.merge_seconds += time.perf_counter() - started
        return merged


def parse_segment(data: bytes) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(delivered rows: kind, message_id, run_id; fingerprint rows: user_id, fingerprint,
    run_id) from a segment's bytes, in write order. A torn last line (the process died
    inside write) is ignored: its batch was not yet recorded as acknowledged."""
    kinds: list[Iterable[str]] = []
    ids: list[Iterable[str]] = []
    runs: list[Iterable[str]] = []
    users: list[str] = []
    prints: list[str] = []
    print_runs: list[str] = []
    for line in data.split(b"\n"):
        if not line:
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            log.warning("ignoring a torn line in an acknowledgement journal")
            continue
        if record[0] == "d":
            _, kind, run_id, keys = record
            kinds.append(itertools.repeat(kind, len(keys)))
            runs.append(itertools.repeat(run_id, len(keys)))
            ids.append(keys)
        elif record[0] == "f":
            _, run_id, pairs = record
            for user, fingerprint in pairs:
                users.append(user)
                prints.append(fingerprint)
            print_runs.extend(itertools.repeat(run_id, len(pairs)))
    delivered = pd.DataFrame(
        {
            "kind": list(itertools.chain.from_iterable(kinds)),
            "message_id": list(itertools.chain.from_iterable(ids)),
            "run_id": list(itertools.chain.from_iterable(runs)),
        },
        dtype=object,
    )
    fingerprints = pd.DataFrame(
        {"user_id": users, "fingerprint": prints, "run_id": print_runs}, dtype=object
    )
    return delivered, fingerprints
