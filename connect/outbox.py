"""Where payloads go: the Connect API, or a dry-run file. Same interface for both."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Iterable
from pathlib import Path
from typing import IO, Any, Protocol, TypeVar

import orjson
from connect_sync.connect.client import (
    AckCallback,
    ClientConfig,
    ConnectClient,
    DeliveryStats,
    Item,
    ItemChunk,
    ProgressCallback,
    items_of,
    payload_json,
)

T = TypeVar("T")


def run_event_loop(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, on uvloop when it is installed (uvicorn's standard extra brings it):
    a C event loop spends about 15% less client CPU per request."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coroutine)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coroutine)


class Outbox(Protocol):
    def check(self) -> None:
        """Preflight before any data is read; raises a ConnectConfigurationError (exit 2)
        when the destination cannot take deliveries. Takes seconds at most."""
        ...

    def send(
        self,
        kind: str,
        items: Iterable[Item],
        on_ack: AckCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DeliveryStats: ...

    def send_chunks(
        self,
        kind: str,
        chunks: Iterable[ItemChunk],
        on_ack: AckCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DeliveryStats: ...

    def close(self) -> None: ...


class ApiOutbox:
    """Delivers to a Connect API (the real one or the sandbox).

    One client for the whole run, so its rate limit holds across every stage.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.client = ConnectClient(config)

    def check(self) -> None:
        """`ConnectClient.check`: raises ConnectUnreachable, AuthenticationError or
        EndpointError (all ConnectConfigurationError) unless Connect answers and takes the
        key. One request, no data sent, nothing stored."""
        run_event_loop(self.client.check())

    def send(self, kind, items, on_ack=None, on_progress=None) -> DeliveryStats:
        return run_event_loop(self.client.deliver(kind, items, on_ack, on_progress))

    def send_chunks(self, kind, chunks, on_ack=None, on_progress=None) -> DeliveryStats:
        return self.send(kind, items_of(chunks), on_ack, on_progress)

    def close(self) -> None:
        return None


class DryRunOutbox:
    """Writes what would be sent as JSON Lines `{"endpoint", "body"}`, in send order.

    Acknowledges nothing: a dry run records no delivery and moves no cursor.
    """

    def __init__(self, output: Path | None) -> None:
        self.path = output
        self._file: IO[bytes] | None = open(output, "wb") if output else None  # noqa: SIM115
        self.count = 0

    def check(self) -> None:
        """Nothing to reach: a dry run needs neither the API nor a key."""
        return None

    def send(self, kind, items, on_ack=None, on_progress=None) -> DeliveryStats:
        items = list(items)
        chunk = ItemChunk([k for k, _ in items], [p for _, p in items])
        return self.send_chunks(kind, [chunk], on_ack, on_progress)

    def send_chunks(self, kind, chunks, on_ack=None, on_progress=None) -> DeliveryStats:
        # `{"endpoint":...,"body":` + the payload's JSON + `}`, one join per chunk:
        # payloads are not re-serialized, and no Python code runs per item
        head = orjson.dumps({"endpoint": f"/v2/{kind}"})[:-1] + b',"body":'
        between = b"}\n" + head
        stats = DeliveryStats()
        for chunk in chunks:
            if self._file is not None and len(chunk):
                joined = _joined(chunk.payloads, between)
                self._file.write(head)
                self._file.write(joined)
                self._file.write(b"}\n")
            stats.processed += len(chunk)
            if on_progress:
                on_progress(stats)
        stats.sent = stats.processed
        self.count += stats.sent
        return stats

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _joined(payloads: list, separator: bytes) -> bytes:
    """The payloads' JSON joined by `separator`. Dict payloads are serialized a thousand
    at a time: each `orjson.dumps` result holds a buffer of several KB until it is
    joined, so a list of 255k of them would cost a GB."""
    try:
        return separator.join(payloads)
    except TypeError:  # dict payloads among them
        step = 1000
        return separator.join(
            separator.join(map(payload_json, payloads[i : i + step]))
            for i in range(0, len(payloads), step)
        )
