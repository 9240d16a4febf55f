"""Bulk delivery to the Connect API: batches, concurrency, rate limit, retries, bisection.

Items stream from any iterable through a bounded queue into batches of at most 100, so a
run of millions of items never holds more than a few batches' bodies at once. A pool of
`concurrency` workers sends them, each over its own keep-alive HTTP/1.1 connection
(connect.transport); every request (first tries, retries and bisection halves alike)
takes a slot from the run's shared `RateLimiter`. Outcomes per batch:

- 2xx: acknowledged; `on_ack(keys)` is called at once, before the worker moves on.
- 400: nothing of the batch was stored; it is halved until the bad items are isolated,
  each recorded as a `Rejection` with the API's message; the good ones are delivered.
- 401/403: `AuthenticationError` stops the whole delivery at once; 404/405 likewise
  `EndpointError` (the URL is not the Connect API).
- 429: every request of the run waits for `Retry-After`, then the batch is retried
  (429s have their own budget, RATE_LIMIT_PATIENCE times `max_retries`).
- 5xx, timeouts, dropped connections: retried with exponential backoff and jitter up
  to `max_retries`; then the batch is `failed` (retryable). After `concurrency` batches
  in a row failed like that, the API is considered down and the rest is left unsent.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from itertools import chain
from typing import Any

import httpx
import orjson
from connect_sync.connect.errors import AuthenticationError, DeliveryFailed, EndpointError
from connect_sync.connect.ratelimit import RateLimiter
from connect_sync.connect.transport import TRANSPORT_ERRORS, URL_ERRORS, Answer, Lane

log = logging.getLogger(__name__)

CLIENT_NAME = "segment-connect-sync/0.1.0"
MAX_BATCH = 100
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
AUTH_STATUS = frozenset({401, 403})
#: 429s a batch may receive per allowed retry before it counts as failed.
RATE_LIMIT_PATIENCE = 4

#: A JSON body: bytes (one JSON object, as the transforms build them) or a dict.
Payload = bytes | dict[str, Any]
#: An item to send: its bookkeeping key (message id or user id) and its JSON body.
Item = tuple[str, Payload]
AckCallback = Callable[[list[str]], None]


@dataclass(frozen=True, slots=True)
class ItemChunk:
    """Many items side by side: `keys[i]` is the bookkeeping key of `payloads[i]`.

    The pipeline hands payloads over a chunk at a time, so nothing between the transform
    and the request body (or the dry-run file) runs Python code per item.
    """

    keys: list[str]
    payloads: list[Payload]

    def __len__(self) -> int:
        return len(self.keys)


def items_of(chunks: Iterable[ItemChunk]) -> Iterator[Item]:
    """The chunks' items one by one, in order."""
    return chain.from_iterable(zip(c.keys, c.payloads, strict=True) for c in chunks)


def payload_json(payload: Payload) -> bytes:
    """The payload as JSON bytes (a bytes payload is JSON already)."""
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def payload_object(payload: Payload) -> dict[str, Any]:
    """The payload as a dict (a bytes payload decoded)."""
    return orjson.loads(payload) if isinstance(payload, bytes) else payload


def batch_json(payloads: Iterable[Payload]) -> bytes:
    """A JSON array of the payloads, joining their bytes (nothing is serialized again)."""
    return b"[" + b",".join(map(payload_json, payloads)) + b"]"


@dataclass
class Rejection:
    key: str
    payload: Payload
    reason: str
    status: int
    retryable: bool = False

    @property
    def user_id(self) -> Any:
        """The payload's `user_id`, if it has one."""
        return payload_object(self.payload).get("user_id")


@dataclass
class DeliveryStats:
    """What a delivery did; updated live while it runs (progress bars read it)."""

    processed: int = 0  # items finished one way or another
    sent: int = 0  # items acknowledged by Connect
    requests: int = 0
    retries: int = 0
    rate_limited: int = 0  # 429 answers received
    rejected: list[Rejection] = field(default_factory=list)  # 400: bad items, not retryable
    failed: list[Rejection] = field(default_factory=list)  # no answer after every retry
    unsent: int = 0  # never tried: Connect kept failing, the delivery stopped early

    @property
    def undelivered(self) -> int:
        """Items that may still need delivering (failed or never tried)."""
        return len(self.failed) + self.unsent

    def merge(self, other: DeliveryStats) -> None:
        self.processed += other.processed
        self.sent += other.sent
        self.requests += other.requests
        self.retries += other.retries
        self.rate_limited += other.rate_limited
        self.rejected.extend(other.rejected)
        self.failed.extend(other.failed)
        self.unsent += other.unsent


ProgressCallback = Callable[[DeliveryStats], None]


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    api_key: str
    concurrency: int = 8
    rate_limit: float | None = None
    max_retries: int = 8
    timeout_s: float = 30.0
    batch_size: int = MAX_BATCH
    backoff_base_s: float = 0.2
    backoff_max_s: float = 20.0


class ConnectClient:
    """Sends identify and track items through the batch endpoints, keeping exact books.

    One client per run: its rate limiter is shared by every request of every `deliver`.
    """

    def __init__(self, config: ClientConfig, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter or RateLimiter(config.rate_limit)
        self._tls: ssl.SSLContext | None = None

    def _lane(self) -> Lane:
        if self._tls is None:  # loading the CA bundle costs ~20 ms: once per client
            self._tls = httpx.create_ssl_context()
        headers = {
            "X-Outbound-Key": self.config.api_key,
            "X-Outbound-Client": CLIENT_NAME,
            "Content-Type": "application/json",
        }
        timeout = httpx.Timeout(self.config.timeout_s, connect=min(10.0, self.config.timeout_s))
        return Lane(self.config.base_url, headers, timeout, self._tls)

    async def deliver(
        self,
        kind: str,
        items: Iterable[Item],
        on_ack: AckCallback | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> DeliveryStats:
        """Send `items` to `/{kind}` (identify or track) and report what happened."""
        stats = DeliveryStats()
        size = max(1, min(self.config.batch_size, MAX_BATCH))
        workers_n = max(1, self.config.concurrency)
        queue: asyncio.Queue[list[Item] | None] = asyncio.Queue(maxsize=workers_n * 2)
        run = _Run(kind, stats, on_ack, workers_n)

        async def produce() -> None:
            batch: list[Item] = []
            for item in items:
                batch.append(item)
                if len(batch) == size:
                    await queue.put(batch)
                    batch = []
            if batch:
                await queue.put(batch)
            for _ in range(workers_n):
                await queue.put(None)

        async def work() -> None:
            async with self._lane() as lane:
                while (batch := await queue.get()) is not None:
                    if run.stopped:
                        stats.unsent += len(batch)
                    else:
                        await self._batch(lane, run, batch)
                    stats.processed += len(batch)
                    if on_progress:
                        on_progress(stats)

        tasks = [asyncio.create_task(produce())]
        tasks += [asyncio.create_task(work()) for _ in range(workers_n)]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        log.debug(
            "%s: %s sent in %s requests (%s retries, %s rate-limited, %s rejected, "
            "%s failed, %s unsent)",
            kind,
            stats.sent,
            stats.requests,
            stats.retries,
            stats.rate_limited,
            len(stats.rejected),
            len(stats.failed),
            stats.unsent,
        )
        return stats

    async def _batch(self, lane: Lane, run: _Run, batch: list[Item]) -> None:
        """One batch to the end, with one debug line."""
        started = time.monotonic()
        before = (run.stats.sent, run.stats.retries, len(run.stats.rejected))
        await self._send(lane, run, batch)
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "%s batch of %s: %s sent, %s retries, %s rejected, %.3f s",
                run.kind,
                len(batch),
                run.stats.sent - before[0],
                run.stats.retries - before[1],
                len(run.stats.rejected) - before[2],
                time.monotonic() - started,
            )

    async def _send(self, lane: Lane, run: _Run, batch: list[Item]) -> None:
        """Send one batch with retries; a 400 is split in halves to find the bad items."""
        stats = run.stats
        single = len(batch) == 1
        path = f"/{run.kind}" if single else f"/{run.kind}/batch"
        body = payload_json(batch[0][1]) if single else batch_json(p for _, p in batch)
        attempt = throttled = 0
        while True:
            await self.limiter.acquire()
            stats.requests += 1
            response: Answer | None = None
            error = ""
            try:
                response = await lane.post(path, body)
                status = response.status_code
            except URL_ERRORS as exc:
                raise EndpointError(
                    f"CONNECT_API_URL {self.config.base_url!r} is not an http(s) URL: {exc}"
                ) from None
            except TRANSPORT_ERRORS as exc:
                status = 0
                error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            if 200 <= status < 300:
                stats.sent += len(batch)
                run.consecutive_failures = 0
                if run.on_ack:
                    run.on_ack([key for key, _ in batch])
                return
            if status in AUTH_STATUS:
                raise AuthenticationError(
                    f"Connect rejected the API key ({status}): check CONNECT_API_KEY "
                    "for this environment"
                )
            if status == 400:
                if single:
                    key, payload = batch[0]
                    stats.rejected.append(Rejection(key, payload, _error_message(response), 400))
                    return
                half = len(batch) // 2
                await self._send(lane, run, batch[:half])
                await self._send(lane, run, batch[half:])
                return
            if status in (404, 405):
                raise EndpointError(
                    f"Connect answered {status} for {path}: check CONNECT_API_URL "
                    f"(now {self.config.base_url}); it must end in /v2"
                )
            retryable = status == 0 or status >= 500 or status in RETRYABLE_STATUS
            if status == 429:
                # "slow down", not a failure: every request of the run waits for
                # Retry-After; a separate, larger budget than other errors
                stats.rate_limited += 1
                if throttled < RATE_LIMIT_PATIENCE * max(1, self.config.max_retries):
                    throttled += 1
                    stats.retries += 1
                    self.limiter.pause_until(_retry_after(response, self._backoff(throttled)))
                    continue
            elif retryable and attempt < self.config.max_retries:
                attempt += 1
                stats.retries += 1
                await asyncio.sleep(self._backoff(attempt))
                continue
            reason = (error if status == 0 else f"HTTP {status}: {_error_message(response)}") + (
                f" (after {attempt + throttled} retries)" if attempt + throttled else ""
            )
            target = stats.failed if retryable else stats.rejected
            target.extend(
                Rejection(key, payload, reason, status, retryable=retryable)
                for key, payload in batch
            )
            if retryable:
                run.consecutive_failures += 1
                if run.consecutive_failures >= run.workers and not run.stopped:
                    run.stopped = True
                    log.error(
                        "Connect failed %s batches in a row after every retry (%s); "
                        "not sending the rest of this %s delivery",
                        run.consecutive_failures,
                        reason,
                        run.kind,
                    )
            return

    def _backoff(self, attempt: int) -> float:
        """Exponential backoff with jitter: uniform in [c/4, c], c = min(max, base * 2^(n-1))."""
        ceiling = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return random.uniform(ceiling / 4, ceiling)


@dataclass
class _Run:
    """The shared state of one `deliver` call."""

    kind: str
    stats: DeliveryStats
    on_ack: AckCallback | None
    workers: int
    consecutive_failures: int = 0
    stopped: bool = False


def _retry_after(response: Answer | None, default: float) -> float:
    """Seconds from a `Retry-After` header (delta-seconds or HTTP date); else `default`."""
    value = response.headers.get("retry-after") if response is not None else None
    if not value:
        return default
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError):
        return default


def _error_message(response: Answer | None) -> str:
    if response is None:
        return "no response"
    try:
        error = orjson.loads(response.content).get("error", {})
        return str(error.get("Message") or error.get("message") or response.text)[:500]
    except (orjson.JSONDecodeError, AttributeError):
        return response.text[:500] or f"HTTP {response.status_code}"


def deliver(
    config: ClientConfig,
    kind: str,
    items: Iterable[Item],
    on_ack: AckCallback | None = None,
    on_progress: ProgressCallback | None = None,
) -> DeliveryStats:
    """Blocking form of `ConnectClient.deliver`."""
    return asyncio.run(ConnectClient(config).deliver(kind, items, on_ack, on_progress))


__all__ = [
    "AuthenticationError",
    "ClientConfig",
    "ConnectClient",
    "DeliveryFailed",
    "DeliveryStats",
    "EndpointError",
    "Payload",
    "Rejection",
    "deliver",
]
