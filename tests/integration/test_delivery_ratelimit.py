"""The shared rate limiter's schedule and the ack journal's crash-safety rules (no clocks
asserted: slots are computed, not measured)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import duckdb
import orjson
import pytest
import sqlalchemy as sa
from connect_sync.connect.ratelimit import RateLimiter
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.journal import AckJournal, parse_segment
from connect_sync.warehouse.state import StateStore


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """Injected into each limiter: nothing else in the process sees this clock."""
    return Clock()


def test_slots_are_spaced_by_the_interval_without_bursts(clock: Clock) -> None:
    limiter = RateLimiter(50, clock=clock)
    assert [round(limiter.reserve(), 6) for _ in range(4)] == [0, 0.02, 0.04, 0.06]
    clock.now += 1.0  # idle for a while: no burst is saved up
    assert [round(limiter.reserve(), 6) for _ in range(3)] == [0, 0.02, 0.04]


def test_a_429_pause_holds_every_caller_even_without_a_limit(clock: Clock) -> None:
    unlimited = RateLimiter(None, clock=clock)
    assert unlimited.reserve() == unlimited.reserve() == 0
    unlimited.pause_until(2.0)
    assert unlimited.reserve() == unlimited.reserve() == 2.0
    clock.now += 2.0
    assert unlimited.reserve() == 0
    limited = RateLimiter(10, clock=clock)
    limited.pause_until(1.0)
    assert [round(limited.reserve(), 6) for _ in range(3)] == [1.0, 1.1, 1.2]


def test_a_pause_begun_while_a_caller_waits_for_its_slot_holds_that_caller(
    clock: Clock,
) -> None:
    """A 429 arrives while a worker sleeps towards its slot: the worker must wake up, see
    the pause and wait for it too, not start its request inside the pause."""
    paused: list[float] = []

    async def sleep(seconds: float) -> None:
        if not paused:  # another worker got a 429 while this one slept
            limiter.pause_until(2.0)
            paused.append(clock.now)
        clock.now += seconds

    limiter = RateLimiter(10, clock=clock, sleep=sleep)
    assert limiter.reserve() == 0  # the slot before: the next one is 0.1 s away
    start = clock.now

    asyncio.run(limiter.acquire())

    assert paused == [start]
    assert clock.now >= start + 2.0


def test_a_torn_last_line_is_ignored() -> None:
    good = orjson.dumps(["d", "event", "r1", ["a", "b"]]) + b"\n"
    torn = orjson.dumps(["d", "event", "r1", ["c", "d"]])[:-5]
    delivered, prints = parse_segment(good + torn)
    assert delivered["message_id"].tolist() == ["a", "b"] and prints.empty


@pytest.fixture
def store(tmp_path: Path) -> StateStore:
    store = StateStore(
        create_engine(f"duckdb:///{tmp_path / 's.duckdb'}", create_dirs=True), "cs", "segment"
    )
    store.migrate()
    return store


def test_replay_takes_a_dead_runs_segments_but_never_a_live_one(
    store: StateStore, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    live = AckJournal(directory, store)
    live.delivered("event", ["live-1"], "r-live")
    # a segment left by a killed process: nobody holds its lock
    (directory / f"00000000000000000001-{os.getpid() + 1}-000000.acks").write_bytes(
        orjson.dumps(["d", "event", "r-dead", ["dead-1", "dead-2"]])
        + b"\n"
        + orjson.dumps(["f", "r-dead", [["u1", "f1"]]])
        + b"\n"
    )

    recovered = AckJournal(directory, store).replay()

    assert recovered == 3
    assert store.delivered_among("event", ["live-1", "dead-1", "dead-2"]) == {"dead-1", "dead-2"}
    assert store.fingerprints(["u1"]) == {"u1": "f1"}
    live.close()  # the live run merges its own segment
    assert store.delivered_among("event", ["live-1"]) == {"live-1"}
    assert not list(directory.glob("*.acks"))


def test_a_failed_merge_keeps_the_segment_for_the_next_run(
    store: StateStore, tmp_path: Path
) -> None:
    directory = tmp_path / "journal"
    journal = AckJournal(directory, store)
    journal.delivered("event", ["m-1"], "r")
    store.engine.dispose()
    database = tmp_path / "s.duckdb"
    database.rename(tmp_path / "away.duckdb")  # the state database is gone: a fresh, empty one

    with pytest.raises((sa.exc.DBAPIError, duckdb.Error)):  # a real database error
        journal.close()

    assert len(list(directory.glob("*.acks"))) == 1
    store.engine.dispose()
    (tmp_path / "away.duckdb").replace(database)  # it is back
    assert AckJournal(directory, store).replay() == 1
    assert store.delivered_among("event", ["m-1"]) == {"m-1"}


def test_a_failed_merge_says_why(store: StateStore, tmp_path: Path) -> None:
    journal = AckJournal(tmp_path / "journal", store)
    journal.delivered("event", ["m-1"], "r")
    store.engine.dispose()
    (tmp_path / "s.duckdb").rename(tmp_path / "away.duckdb")
    with pytest.raises(sa.exc.DBAPIError, match="cs"):  # no schema `cs` to merge into
        journal.close()
