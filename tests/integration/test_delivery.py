"""The delivery engine against the real sandbox over HTTP: batching, bisection of a 400,
401/404 handling, failures, and exact bookkeeping through the state store."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from pathlib import Path

import pytest
import sqlalchemy as sa
from connect_sync.connect.client import ClientConfig, ConnectClient, DeliveryStats, ItemChunk
from connect_sync.connect.errors import AuthenticationError, EndpointError
from connect_sync.flows.pipeline import SyncJob, SyncOptions

from connect_sync.settings import Settings
from tests.adversarial.rogue import Reply, Rogue
from tests.segment_rows import row, write_tables

FAST = {"backoff_base_s": 0.01, "backoff_max_s": 0.05}


def config(url: str, key: str, **overrides) -> ClientConfig:
    return ClientConfig(base_url=url, api_key=key, **{**FAST, **overrides})


def track(i: int, **extra) -> tuple[str, dict]:
    return f"m-{i}", {
        "user_id": f"u-{i % 37}",
        "event": "Order Completed",
        "properties": {"n": i},
        "timestamp": 1_790_000_000 + i,
        **extra,
    }


def deliver(cfg: ClientConfig, kind: str, items, acked: list[str] | None = None) -> DeliveryStats:
    on_ack = acked.extend if acked is not None else None
    return asyncio.run(ConnectClient(cfg).deliver(kind, items, on_ack))


def test_items_stream_through_batches_of_100_and_each_batch_is_acknowledged(sandbox) -> None:
    acked: list[str] = []
    seen = []

    def generate():  # a generator: the client never needs the whole list
        for i in range(201):
            seen.append(i)
            yield track(i)

    stats = deliver(
        config(sandbox.api_url, sandbox.api_key, concurrency=2), "track", generate(), acked
    )

    assert stats.sent == stats.processed == 201
    assert stats.requests == 3  # 100 + 100 to /track/batch, the last one to /track
    assert sorted(acked) == sorted(f"m-{i}" for i in range(201))
    remote = sandbox.stats()
    assert remote["events"] == remote["track_items"] == 201
    assert remote["requests"] == 3 and remote["duplicate_events"] == 0


def test_a_400_batch_is_bisected_99_delivered_and_the_bad_item_recorded(
    sandbox, tmp_path: Path
) -> None:
    """One item of a batch has a non-numeric timestamp: Connect refuses the whole batch;
    the job finds the item, records it with the API's reason, and delivers the other 99."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(url, "segment", {"tracks": [row(1, user_id="u-1", event="Signed Up")]})
    job = SyncJob(
        Settings(
            warehouse_url=url,
            api_url=sandbox.api_url,
            api_key=sandbox.api_key,
            journal_dir=tmp_path / "journal",
        ),
        SyncOptions(streams=("events",)),
    )
    job.prepare()
    items = [track(i) for i in range(100)]
    items[57] = track(57, timestamp="yesterday")

    chunk = ItemChunk([key for key, _ in items], [payload for _, payload in items])
    assert job.context is not None and job.books is not None
    send = job.context.send
    stats = send("events", "track", [chunk], job.books.delivered("event"), by_message_id=True)
    job.finish()

    assert stats.sent == 99 and len(stats.rejected) == 1 and not stats.failed
    remote = sandbox.stats()
    assert remote["events"] == 99 and remote["duplicate_events"] == 0
    assert job.state.delivered_among("event", [key for key, _ in items]) == {
        key for key, _ in items if key != "m-57"
    }
    rejections = job.state.rejections()
    assert rejections["message_id"].tolist() == ["m-57"]
    assert "timestamp" in rejections["reason"].iloc[0]
    assert not rejections["retryable"].iloc[0]
    assert rejections["endpoint"].iloc[0] == "/v2/track"


def test_several_bad_items_are_all_found(sandbox) -> None:
    items = [track(i) for i in range(300)]
    bad = {3, 4, 150, 299}
    for i in bad:
        items[i] = track(i, event="")
    acked: list[str] = []

    stats = deliver(config(sandbox.api_url, sandbox.api_key), "track", items, acked)

    assert {r.key for r in stats.rejected} == {f"m-{i}" for i in bad}
    assert all(r.status == 400 and "event" in r.reason for r in stats.rejected)
    assert stats.sent == len(acked) == 296
    assert sandbox.stats()["events"] == 296


def test_a_401_stops_the_delivery_at_once_without_retries(sandbox) -> None:
    acked: list[str] = []
    cfg = config(sandbox.api_url, "wrong-key", concurrency=4)

    with pytest.raises(AuthenticationError, match="CONNECT_API_KEY"):
        deliver(cfg, "track", (track(i) for i in range(100_000)), acked)

    assert acked == []
    assert sandbox.stats()["requests"] <= 4  # at most the first request of each worker


def test_a_url_that_is_not_the_api_is_a_configuration_error(sandbox) -> None:
    with pytest.raises(EndpointError, match="CONNECT_API_URL"):
        deliver(config(sandbox.url, sandbox.api_key), "track", [track(i) for i in range(10)])


def test_an_unreachable_api_fails_retryably_and_stops_early() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    cfg = config(f"http://127.0.0.1:{port}/v2", "k", concurrency=2, max_retries=1)
    acked: list[str] = []

    stats = deliver(cfg, "track", [track(i) for i in range(2_000)], acked)

    assert acked == [] and stats.sent == 0
    assert stats.failed and all(r.retryable and r.status == 0 for r in stats.failed)
    assert stats.unsent > 0  # Connect kept failing: the rest was not even tried
    assert len(stats.failed) + stats.unsent == stats.undelivered == 2_000
    assert stats.requests < 20


def test_one_failed_batch_does_not_stop_the_others() -> None:
    """The batch holding item 0 gets a 503 every time; the other 19 (answered in 50 ms, so
    most are still to send when it fails) are delivered: the delivery stops only after
    `concurrency` batches in a row failed. The failed items' reason is the API's message
    and the retries it took."""

    def reply(seen) -> Reply:
        if b'"n":0}' in seen.body:
            return Reply(503, b'{"error": {"Message": "down for item 0", "Code": 503}}')
        return Reply(200, delay_s=0.05)

    with Rogue(reply) as rogue:
        cfg = config(f"{rogue.url}/v2", "k", concurrency=2, max_retries=1)
        stats = deliver(cfg, "track", [track(i) for i in range(2_000)])

    assert stats.sent == 1_900 and stats.unsent == 0
    assert [r.key for r in stats.failed] == [f"m-{i}" for i in range(100)]
    assert {r.reason for r in stats.failed} == {"HTTP 503: down for item 0 (after 1 retries)"}


def test_progress_is_reported_after_each_batch(sandbox) -> None:
    seen: list[int] = []
    client = ConnectClient(config(sandbox.api_url, sandbox.api_key))
    items = [track(i) for i in range(250)]

    stats = asyncio.run(
        client.deliver("track", items, on_progress=lambda s: seen.append(s.processed))
    )

    assert stats.sent == 250
    assert len(seen) == 3 and seen == sorted(seen) and seen[-1] == 250


def test_a_cancelled_delivery_does_not_say_connect_failed(caplog) -> None:
    """Cancelled from outside (Ctrl-C, a flow's timeout) while its two requests wait for
    their answers: the delivery ends cancelled. Its requests are not taken for timed-out
    ones, so nothing says Connect failed and no batch is counted failed."""
    release = threading.Event()
    progress: list[int] = []

    def slow(seen) -> Reply:
        release.wait(5)
        return Reply(200)

    with Rogue(slow) as rogue, caplog.at_level(logging.ERROR):
        cfg = config(f"{rogue.url}/v2", "k", concurrency=2, timeout_s=10, max_retries=0)
        delivery = ConnectClient(cfg).deliver(
            "track",
            [track(i) for i in range(1_000)],
            on_progress=lambda s: progress.append(len(s.failed)),
        )
        try:
            with pytest.raises(TimeoutError):
                asyncio.run(asyncio.wait_for(delivery, 0.5))
        finally:
            release.set()

    assert not [r for r in caplog.records if r.name.startswith("connect_sync")]
    assert progress == []


def test_bookkeeping_round_trip_on_each_backend(warehouse, tmp_path: Path) -> None:
    """Bulk merges and large lookups (the staged join paths) on DuckDB and PostgreSQL."""
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.journal import AckJournal
    from connect_sync.warehouse.state import StateStore

    url, schema = warehouse
    store = StateStore(create_engine(url, create_dirs=True), f"{schema}_state", schema)
    store.migrate()
    journal = AckJournal(tmp_path / "journal", store, rotate_every=7_000)
    ids = [f"id-{i}\t\\ {i}" for i in range(25_000)]  # tabs and backslashes survive COPY
    for start in range(0, len(ids), 100):
        journal.delivered("event", ids[start : start + 100], "run-1")
    journal.fingerprints([(f"user-{i}", "a") for i in range(3_000)], "run-1")
    journal.fingerprints([(f"user-{i}", "b") for i in range(3_000)], "run-1")  # last wins
    journal.close()

    assert not list((tmp_path / "journal").glob("*.acks"))
    probe = [*ids[::3], *(f"new-{i}" for i in range(5_000))]
    assert store.delivered_among("event", probe) == set(ids[::3])
    assert store.delivered_among("alias", probe) == set()
    assert store.delivered_among("event", ids[:10]) == set(ids[:10])  # the IN-list path
    prints = store.fingerprints([f"user-{i}" for i in range(0, 6_000)])
    assert len(prints) == 3_000 and set(prints.values()) == {"b"}
    with store.engine.connect() as conn:
        table = store.table("delivered")
        count = conn.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()
    assert count == 25_000
    store.record_delivered("event", ids[:500], "run-2")  # already there: first record kept
    with store.engine.connect() as conn:
        runs = conn.execute(sa.select(table.c.run_id).distinct()).scalars().all()
    assert runs == ["run-1"]
