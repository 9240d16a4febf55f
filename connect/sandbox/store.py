"""What the sandbox has received: profiles, events, counters. In memory."""

from __future__ import annotations

import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import orjson

PROFILE_FIELDS = (
    "first_name",
    "last_name",
    "email",
    "phone_number",
    "timezone",
    "group_id",
)
TOKEN_FIELDS = ("apns", "gcm", "fcm")
DAY_S = 24 * 3600


@dataclass
class EventName:
    """Arrivals of one event name, for the Events page."""

    total: int = 0
    last_seen: float = 0.0
    arrivals: deque[float] = field(default_factory=deque)

    def count_last_day(self, now: float) -> int:
        while self.arrivals and self.arrivals[0] < now - DAY_S:
            self.arrivals.popleft()
        return len(self.arrivals)


class MemoryStore:
    """Profiles keyed by user id (string), events in arrival order, counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.events_by_user: dict[str, list[int]] = defaultdict(list)
        self.event_names: dict[str, EventName] = {}
        self.event_keys: set[bytes] = set()
        self.counters: dict[str, int] = defaultdict(int)

    # -- writes ---------------------------------------------------------------------------

    def identify(self, items: list[dict[str, Any]]) -> None:
        with self.lock:
            self.counters["identify_items"] += len(items)
            for item in items:
                self._identify(item)

    def _identify(self, item: dict[str, Any]) -> None:
        user_id = item["user_id"]
        previous_id = item.get("previous_id")
        if previous_id is not None and str(previous_id) != user_id:
            self._merge(str(previous_id), user_id)
        profile = self.users.setdefault(user_id, _new_profile(user_id))
        for name in PROFILE_FIELDS:
            if item.get(name) is not None:
                profile[name] = item[name]
        for name in TOKEN_FIELDS:
            for token in item.get(name) or ():
                if token not in profile[name]:
                    profile[name].append(token)
        for name in ("attributes", "group_attributes"):
            if item.get(name):
                profile[name].update(item[name])
        profile["updated_at"] = time.time()

    def _merge(self, previous_id: str, user_id: str) -> None:
        """Fold the previous user's profile and events into user_id."""
        old = self.users.pop(previous_id, None)
        target = self.users.setdefault(user_id, _new_profile(user_id))
        if old is not None:
            for name in PROFILE_FIELDS:
                if target.get(name) is None and old.get(name) is not None:
                    target[name] = old[name]
            for name in TOKEN_FIELDS:
                for token in old[name]:
                    if token not in target[name]:
                        target[name].append(token)
            for name in ("attributes", "group_attributes"):
                target[name] = {**old[name], **target[name]}
            target.setdefault("merged_ids", []).append(previous_id)
        moved = self.events_by_user.pop(previous_id, [])
        for index in moved:
            self.events[index]["user_id"] = user_id
        self.events_by_user[user_id].extend(moved)

    def track(self, items: list[dict[str, Any]]) -> None:
        now = time.time()
        with self.lock:
            self.counters["track_items"] += len(items)
            for item in items:
                user_id = item["user_id"]
                event = {
                    "user_id": user_id,
                    "event": item["event"],
                    "properties": item.get("properties") or {},
                    "timestamp": item.get("timestamp"),
                    "received_at": now,
                }
                key = orjson.dumps(
                    [user_id, event["event"], event["timestamp"], event["properties"]],
                    option=orjson.OPT_SORT_KEYS,
                )
                if key in self.event_keys:
                    self.counters["duplicate_events"] += 1
                else:
                    self.event_keys.add(key)
                self.events_by_user[user_id].append(len(self.events))
                self.events.append(event)
                name = self.event_names.setdefault(event["event"], EventName())
                name.total += 1
                name.last_seen = now
                name.arrivals.append(now)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self.counters[name] += n

    # -- reads ----------------------------------------------------------------------------

    def user(self, user_id: str) -> dict[str, Any] | None:
        with self.lock:
            profile = self.users.get(user_id)
            return None if profile is None else dict(profile)

    def find_events(self, user_id: str | None = None, event: str | None = None) -> list[dict]:
        with self.lock:
            rows = (
                [self.events[i] for i in self.events_by_user.get(user_id, [])]
                if user_id is not None
                else list(self.events)
            )
        return [
            {k: e[k] for k in ("user_id", "event", "properties", "timestamp")}
            for e in rows
            if event is None or e["event"] == event
        ]

    def stats(self) -> dict[str, int]:
        with self.lock:
            return {
                "requests": self.counters["requests"],
                "identify_items": self.counters["identify_items"],
                "track_items": self.counters["track_items"],
                "users": len(self.users),
                "events": len(self.events),
                "duplicate_events": self.counters["duplicate_events"],
                "rejected_items": self.counters["rejected_items"],
                "rate_limited": self.counters["rate_limited"],
            }

    def event_summary(self, now: float | None = None) -> list[dict[str, Any]]:
        now = now or time.time()
        with self.lock:
            return sorted(
                (
                    {
                        "event": name,
                        "last_24h": info.count_last_day(now),
                        "total": info.total,
                        "last_seen": info.last_seen,
                    }
                    for name, info in self.event_names.items()
                ),
                key=lambda row: row["event"].lower(),
            )


def _new_profile(user_id: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        **{name: None for name in PROFILE_FIELDS},
        **{name: [] for name in TOKEN_FIELDS},
        "attributes": {},
        "group_attributes": {},
    }
