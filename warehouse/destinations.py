"""Books per (source schema, destination): adopting legacy books, and starting over.

The state store keeps each row under a key (its `source_schema` column): since books are
per destination, the key is `<source schema>@<destination hash>` (`Settings.books_key`).
Books written before that are under the plain source schema: the first destination that
runs adopts them (`adopt_legacy_books`); any other destination starts from nothing.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import sqlalchemy as sa
from connect_sync.warehouse.dialects import capabilities
from connect_sync.warehouse.state import StateStore

log = logging.getLogger(__name__)

#: What a destination's books are: forgotten by `forget_books`, adopted with the runs.
BOOK_TABLES = ("cursors", "delivered", "user_fingerprints", "anonymous_profiles", "rejections")
#: Tables whose rows say a key has books at all (rejections and runs alone do not).
HOLDING_TABLES = ("cursors", "delivered", "user_fingerprints")
_LOCK_KEY = 0x626F6F6B  # pg advisory lock for adoption ("book")


def has_books(store: StateStore, key: str) -> bool:
    """Whether anything was delivered (or a cursor moved) under `key`."""
    with store.engine.connect() as conn:
        return _has_books(store, conn, key)


def _has_books(store: StateStore, conn: sa.Connection, key: str) -> bool:
    for name in HOLDING_TABLES:
        table = store.table(name)
        query = sa.select(sa.literal(1)).where(table.c.source_schema == key).limit(1)
        if conn.execute(query).first() is not None:
            return True
    return False


def adopt_legacy_books(store: StateStore, legacy: str) -> int:
    """Move the books kept under `legacy` (the plain source schema) to the store's key,
    when the key has none yet; returns the rows moved (0: nothing to adopt).

    One transaction, so a concurrent job adopts them at most once. Never raises for a
    store that has no legacy books."""
    key = store.source_schema
    if key == legacy:
        return 0
    moved = 0
    with store.engine.begin() as conn:
        if capabilities(conn.dialect.name).advisory_locks:
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _LOCK_KEY})
        if _has_books(store, conn, key) or not _has_books(store, conn, legacy):
            return 0
        for name in (*BOOK_TABLES, "runs"):
            table = store.table(name)
            result = conn.execute(
                sa.update(table).where(table.c.source_schema == legacy).values(source_schema=key)
            )
            moved += result.rowcount or 0
    log.warning("adopted the books of source schema %s for destination %s", legacy, key)
    return moved


def forget_books(store: StateStore) -> dict[str, int]:
    """Delete the store key's cursors, delivered ids, fingerprints, anonymous-profile marks
    and rejections (the runs stay, as history); returns the rows deleted per table."""
    deleted: dict[str, int] = {}
    with store.engine.begin() as conn:
        for name in BOOK_TABLES:
            table = store.table(name)
            result = conn.execute(
                sa.delete(table).where(table.c.source_schema == store.source_schema)
            )
            deleted[name] = result.rowcount or 0
    return deleted


def adopt_legacy_journal(legacy: Path, current: Path) -> bool:
    """Move the legacy journal folder (unmerged acknowledgements, identity cache) into the
    destination's own; what the destination's folder already holds (an identity cache a
    dry run wrote) is kept. Returns whether anything moved."""
    if not legacy.is_dir() or legacy == current:
        return False
    if not current.exists():
        current.parent.mkdir(parents=True, exist_ok=True)
        legacy.rename(current)
        return True
    moved = False
    for entry in legacy.iterdir():
        if not (current / entry.name).exists():
            entry.rename(current / entry.name)
            moved = True
    shutil.rmtree(legacy, ignore_errors=True)  # only what the destination has already
    return moved


def forget_journal(directory: Path) -> bool:
    """Remove a destination's journal folder (and the identity cache kept in it)."""
    if not directory.is_dir():
        return False
    shutil.rmtree(directory)
    return True
