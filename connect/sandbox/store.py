"""What the sandbox has received: profiles, events, counters, in SQLite.

One implementation for both modes: `SandboxStore()` keeps everything in an in-memory SQLite
database (the default), `SandboxStore(path)` in a file (WAL mode) that can be opened again,
or browsed with any SQLite tool, after the run. Every request is one transaction: a
rejected or faulted request writes nothing. The batch path is a handful of `executemany`
calls on indexed tables.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import Counter
from hashlib import blake2b
from pathlib import Path
from typing import Any

import orjson

PROFILE_FIELDS = ("first_name", "last_name", "email", "phone_number", "timezone", "group_id")
TOKEN_FIELDS = ("apns", "gcm", "fcm")
OBJECT_FIELDS = ("attributes", "group_attributes")
DAY_S = 24 * 3600
COUNTERS = (
    "requests",
    "identify_items",
    "track_items",
    "duplicate_events",
    "rejected_items",
    "rate_limited",
    "errors_injected",
    "connections_dropped",
    "unauthorized",
)

SCHEMA_VERSION = 1
SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    user_id TEXT PRIMARY KEY,
    profile TEXT NOT NULL,          -- the merged profile as JSON (only the fields set)
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    user_id TEXT NOT NULL,
    event TEXT NOT NULL,
    properties TEXT NOT NULL,       -- JSON object
    timestamp,                      -- seconds as sent (int or float), or NULL
    received_at REAL NOT NULL,
    key INTEGER NOT NULL            -- hash of (user_id, event, timestamp, properties)
);
CREATE INDEX IF NOT EXISTS events_by_user ON events (user_id);
CREATE TABLE IF NOT EXISTS arrivals (  -- per event name and second of arrival
    event TEXT NOT NULL,
    second INTEGER NOT NULL,
    n INTEGER NOT NULL,
    last_at REAL NOT NULL,
    PRIMARY KEY (event, second)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID;
"""

INSERT_EVENT = (
    "INSERT INTO events (user_id, event, properties, timestamp, received_at, key)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
UPSERT_ARRIVAL = (
    "INSERT INTO arrivals (event, second, n, last_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (event, second) DO UPDATE SET n = n + excluded.n, last_at = excluded.last_at"
)
UPSERT_USER = (
    "INSERT INTO users (user_id, profile, updated_at) VALUES (?, ?, ?)"
    " ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile,"
    " updated_at = excluded.updated_at"
)
ADD_COUNTER = "UPDATE counters SET n = n + ? WHERE name = ?"
EVENT_SUMMARY = """
SELECT event,
       coalesce(sum(CASE WHEN second >= ? THEN n END), 0) AS last_24h,
       sum(n) AS total,
       max(last_at) AS last_seen
FROM arrivals GROUP BY event ORDER BY lower(event), event
"""


def new_profile(user_id: str, now: float) -> dict[str, Any]:
    """A stored profile is sparse (only what was set); `full_profile` fills in the rest."""
    return {"user_id": user_id, "created_at": now}


def full_profile(stored: dict[str, Any]) -> dict[str, Any]:
    """The profile as the lookup routes show it, with every field."""
    profile: dict[str, Any] = {
        "user_id": stored["user_id"],
        **dict.fromkeys(PROFILE_FIELDS),
        **{name: [] for name in TOKEN_FIELDS},
        "attributes": {},
        "group_attributes": {},
        "groups": {},
        "disabled_tokens": {},
        "unsubscribed_all": False,
        "unsubscribed_campaigns": [],
        "merged_ids": [],
    }
    profile.update(stored)
    profile["disabled_tokens"] = {
        name: profile["disabled_tokens"].get(name, []) for name in TOKEN_FIELDS
    }
    return profile


def apply_identify(profile: dict[str, Any], item: dict[str, Any]) -> None:
    """Upsert: fields that are present replace, attributes merge key by key, tokens register.

    Group membership: `groups` maps each group id the user was identified with to that
    group's attributes, merged key by key over calls; `group_attributes` sent without a
    `group_id` belong to the user's current group (the last one named). `group_id` and
    `group_attributes` themselves stay as before: the last group, all attributes merged.
    """
    group_id = item.get("group_id") or profile.get("group_id")
    if group_id:
        groups = profile.setdefault("groups", {})
        groups[group_id] = {**groups.get(group_id, {}), **(item.get("group_attributes") or {})}
    for name in PROFILE_FIELDS:
        value = item.get(name)
        if value is not None:
            profile[name] = value
    for name in OBJECT_FIELDS:
        value = item.get(name)
        if value:
            current = profile.get(name)
            profile[name] = {**current, **value} if current else value
    for name in TOKEN_FIELDS:
        tokens = item.get(name)
        if tokens:
            for token in tokens:
                register_token(profile, name, token)


def merge_profiles(target: dict[str, Any], old: dict[str, Any]) -> None:
    """Fold `old` (an earlier id of the same person) into `target`; target's values win."""
    for name in PROFILE_FIELDS:
        if target.get(name) is None and old.get(name) is not None:
            target[name] = old[name]
    for name in OBJECT_FIELDS:
        if old.get(name):
            target[name] = {**old[name], **target.get(name, {})}
    for group_id, attributes in old.get("groups", {}).items():
        groups = target.setdefault("groups", {})
        groups[group_id] = {**attributes, **groups.get(group_id, {})}
    old_disabled = old.get("disabled_tokens", {})
    for name in TOKEN_FIELDS:
        for token in old.get(name, ()):
            if token not in _disabled(target, name):
                _add(target, name, token)
        for token in old_disabled.get(name, ()):
            if token not in target.get(name, ()):
                _add(target.setdefault("disabled_tokens", {}), name, token)
    if old.get("unsubscribed_all"):
        target["unsubscribed_all"] = True
    for campaign in old.get("unsubscribed_campaigns", ()):
        _add(target, "unsubscribed_campaigns", campaign)
    for merged in [*old.get("merged_ids", ()), old["user_id"]]:
        if merged != target["user_id"]:
            _add(target, "merged_ids", merged)
    target["created_at"] = min(target["created_at"], old["created_at"])


def _add(container: dict[str, Any], name: str, value: Any) -> None:
    """Append `value` to the list `container[name]` unless it is there."""
    values = container.setdefault(name, [])
    if value not in values:
        values.append(value)


def _disabled(profile: dict[str, Any], platform: str) -> list[str]:
    return profile.get("disabled_tokens", {}).get(platform, [])


def register_token(profile: dict[str, Any], platform: str, token: str) -> None:
    disabled = _disabled(profile, platform)
    if token in disabled:
        disabled.remove(token)
    _add(profile, platform, token)


def disable_token(profile: dict[str, Any], platform: str, token: str | None) -> None:
    """Disable one token, or all of the platform's tokens when `token` is None."""
    active = profile.setdefault(platform, [])
    for value in list(active) if token is None else [token]:
        if value in active:
            active.remove(value)
        _add(profile.setdefault("disabled_tokens", {}), platform, value)


def event_key(user_id: str, event: str, timestamp: Any, properties_json: bytes) -> int:
    """What makes two received events the same: user, name, timestamp, properties."""
    stamp = "" if timestamp is None else repr(float(timestamp))
    raw = f"{user_id}\x1f{event}\x1f{stamp}\x1f".encode() + properties_json
    return int.from_bytes(blake2b(raw, digest_size=8).digest(), "big", signed=True)


class StoreError(Exception):
    """The database file cannot be opened or was not written by this sandbox."""


class SandboxStore:
    """Profiles keyed by user id (a string), events in arrival order, counters."""

    def __init__(self, path: str | Path | None = None) -> None:
        self.path = str(path) if path else ":memory:"
        self.lock = threading.RLock()
        self.clock_offset = 0.0
        try:
            self._open()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot use {self.path} as the sandbox database: {exc}") from exc

    def _open(self) -> None:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        version = self.conn.execute("PRAGMA user_version").fetchone()[0]
        tables = self.conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if version != SCHEMA_VERSION and (version or tables):
            raise StoreError(
                f"{self.path} is not a sandbox database of this version; use another file"
            )
        if self.path != ":memory:":
            self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
        else:
            self.conn.execute("PRAGMA synchronous = OFF")
        self.conn.execute("PRAGMA temp_store = MEMORY")
        self.conn.execute("PRAGMA cache_size = -262144")  # 256 MiB of page cache
        self.conn.executescript(SCHEMA)
        self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        self.conn.executemany(
            "INSERT OR IGNORE INTO counters (name, n) VALUES (?, 0)", [(c,) for c in COUNTERS]
        )
        #: keys of every stored event, to count duplicates (rebuilt from a reopened file)
        self.event_keys: set[int] = {k for (k,) in self.conn.execute("SELECT key FROM events")}

    # -- time -----------------------------------------------------------------------------

    def now(self) -> float:
        """The sandbox's clock: wall time plus any offset set through /_sandbox/clock."""
        return time.time() + self.clock_offset

    # -- transactions ---------------------------------------------------------------------

    def _write(self, work, counters: dict[str, int]) -> Any:
        """Run `work(cursor)` and counter updates in one transaction."""
        with self.lock:
            cur = self.conn.cursor()
            cur.execute("BEGIN")
            try:
                result = work(cur) if work is not None else None
                cur.executemany(ADD_COUNTER, [(n, name) for name, n in counters.items() if n])
            except BaseException:
                cur.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")
            return result

    def count(self, name: str, n: int = 1, **more: int) -> None:
        """Add to counters (requests, rate_limited, ...) outside any data write."""
        self._write(None, {name: n, **more})

    def reset(self) -> None:
        """Forget everything (and the clock offset)."""
        with self.lock:
            self.clock_offset = 0.0
            self.conn.execute("BEGIN")
            for table in ("users", "events", "arrivals"):
                self.conn.execute(f"DELETE FROM {table}")
            self.conn.execute("UPDATE counters SET n = 0")
            self.conn.execute("COMMIT")
            self.event_keys = set()

    def close(self) -> None:
        with self.lock:
            self.conn.close()

    # -- writes ---------------------------------------------------------------------------

    def track(self, items: list[dict[str, Any]], requests: int = 0) -> None:
        """Store validated track items, counting duplicates; one transaction."""
        now = self.now()
        rows = []
        fresh: set[int] = set()
        duplicates = 0
        dumps = orjson.dumps
        sort = orjson.OPT_SORT_KEYS
        with self.lock:
            seen = self.event_keys
            for item in items:
                user_id = item["user_id"]
                name = item["event"]
                timestamp = item.get("timestamp")
                properties = dumps(item.get("properties") or {}, option=sort)
                key = event_key(user_id, name, timestamp, properties)
                if key in seen or key in fresh:
                    duplicates += 1
                else:
                    fresh.add(key)
                rows.append((user_id, name, properties.decode(), timestamp, now, key))
            second = int(now)
            arrivals = [
                (name, second, n, now)
                for name, n in Counter(item["event"] for item in items).items()
            ]

            def work(cur: sqlite3.Cursor) -> None:
                cur.executemany(INSERT_EVENT, rows)
                cur.executemany(UPSERT_ARRIVAL, arrivals)

            counters = {"track_items": len(items), "requests": requests}
            self._write(work, {**counters, "duplicate_events": duplicates})
            seen |= fresh

    def identify(self, items: list[dict[str, Any]], requests: int = 0) -> None:
        """Upsert validated identifies in order; `previous_id` merges that user in."""
        now = self.now()

        def work(cur: sqlite3.Cursor) -> None:
            ids = {item["user_id"] for item in items}
            ids.update(item["previous_id"] for item in items if item.get("previous_id"))
            profiles = self._load(cur, ids)
            moves: list[tuple[str, str]] = []
            for item in items:
                user_id = item["user_id"]
                previous_id = item.get("previous_id")
                profile = profiles.get(user_id) or new_profile(user_id, now)
                profiles[user_id] = profile
                if previous_id and previous_id != user_id:
                    old = profiles.get(previous_id)
                    if old is not None:
                        merge_profiles(profile, old)
                        profiles[previous_id] = None
                    else:
                        _add(profile, "merged_ids", previous_id)
                    moves.append((user_id, previous_id))
                apply_identify(profile, item)
                profile["updated_at"] = now
            self._save(cur, profiles, now)
            if moves:
                cur.executemany("UPDATE events SET user_id = ? WHERE user_id = ?", moves)

        self._write(work, {"identify_items": len(items), "requests": requests})

    def update_profile(self, user_id: str, change, requests: int = 0) -> None:
        """Apply `change(profile)` to one user (created if new): tokens, subscriptions."""
        now = self.now()

        def work(cur: sqlite3.Cursor) -> None:
            profiles = self._load(cur, {user_id})
            profile = profiles.get(user_id) or new_profile(user_id, now)
            change(profile)
            profile["updated_at"] = now
            self._save(cur, {user_id: profile}, now)

        self._write(work, {"requests": requests})

    @staticmethod
    def _load(cur: sqlite3.Cursor, ids: set[str]) -> dict[str, dict[str, Any] | None]:
        ids_list = list(ids)
        marks = ",".join("?" * len(ids_list))
        rows = cur.execute(
            f"SELECT user_id, profile FROM users WHERE user_id IN ({marks})",
            ids_list,
        ).fetchall()
        return {user_id: orjson.loads(profile) for user_id, profile in rows}

    @staticmethod
    def _save(cur: sqlite3.Cursor, profiles: dict[str, dict[str, Any] | None], now: float) -> None:
        cur.executemany(
            UPSERT_USER,
            [
                (user_id, orjson.dumps(p).decode(), now)
                for user_id, p in profiles.items()
                if p is not None
            ],
        )
        gone = [(user_id,) for user_id, p in profiles.items() if p is None]
        if gone:
            cur.executemany("DELETE FROM users WHERE user_id = ?", gone)

    # -- reads ----------------------------------------------------------------------------

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            row = self.conn.execute(
                "SELECT profile FROM users WHERE user_id = ?", (user_id,)
            ).fetchone()
        return None if row is None else full_profile(orjson.loads(row[0]))

    def find_users(self, prefix: str = "", limit: int = 50) -> list[str]:
        """User ids starting with `prefix`, for the lookup page: known users first (those
        that merged anonymous ids, then those with an email), anonymous ids after."""
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        with self.lock:
            rows = self.conn.execute(
                "SELECT user_id FROM users WHERE user_id LIKE ? ESCAPE '\\'"
                " ORDER BY coalesce(json_array_length(profile, '$.merged_ids'), 0) = 0,"
                " json_extract(profile, '$.email') IS NULL, user_id LIMIT ?",
                (escaped + "%", limit),
            ).fetchall()
        return [r[0] for r in rows]

    def find_events(
        self,
        user_id: str | None = None,
        event: str | None = None,
        limit: int | None = None,
        newest_first: bool = False,
    ) -> list[dict[str, Any]]:
        """Stored events in arrival order, optionally of one user and/or one name."""
        where, params = [], []
        if user_id is not None:
            where.append("user_id = ?")
            params.append(user_id)
        if event is not None:
            where.append("event = ?")
            params.append(event)
        sql = "SELECT user_id, event, properties, timestamp, received_at FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id DESC" if newest_first else " ORDER BY id"
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        with self.lock:
            rows = self.conn.execute(sql, params).fetchall()
        loads = orjson.loads
        return [
            {
                "user_id": u,
                "event": e,
                "properties": loads(p),
                "timestamp": t,
                "received_at": r,
            }
            for u, e, p, t, r in rows
        ]

    def counters(self) -> dict[str, int]:
        with self.lock:
            return dict(self.conn.execute("SELECT name, n FROM counters").fetchall())

    def stats(self) -> dict[str, int]:
        with self.lock:
            counters = self.counters()
            users = self.conn.execute("SELECT count(*) FROM users").fetchone()[0]
            events = self.conn.execute("SELECT count(*) FROM events").fetchone()[0]
        return {
            "requests": counters["requests"],
            "identify_items": counters["identify_items"],
            "track_items": counters["track_items"],
            "users": users,
            "events": events,
            "duplicate_events": counters["duplicate_events"],
            "rejected_items": counters["rejected_items"],
            "rate_limited": counters["rate_limited"],
            "errors_injected": counters["errors_injected"],
            "connections_dropped": counters["connections_dropped"],
            "unauthorized": counters["unauthorized"],
        }

    def event_summary(self, now: float | None = None) -> list[dict[str, Any]]:
        """Per event name: arrivals in the last 24 hours, in all, and the last arrival."""
        now = self.now() if now is None else now
        with self.lock:
            rows = self.conn.execute(EVENT_SUMMARY, (int(now - DAY_S) + 1,)).fetchall()
        return [
            {"event": name, "last_24h": day, "total": total, "last_seen": last}
            for name, day, total, last in rows
        ]


class MemoryStore(SandboxStore):
    """The default: everything in an in-memory SQLite database."""

    def __init__(self) -> None:
        super().__init__(None)
