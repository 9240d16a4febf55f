"""Bulk delivery to the Connect API: batches, concurrency, rate limit, retries, bisection."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import orjson

from connect.errors import AuthenticationError, DeliveryFailed
from connect.ratelimit import RateLimiter

log = logging.getLogger(__name__)

CLIENT_NAME = "segment-connect-sync/0.1.0"
MAX_BATCH = 100
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})

#: An item to send: its bookkeeping key (message id or user id) and its JSON body.
Item = tuple[str, dict[str, Any]]
AckCallback = Callable[[list[str]], None]


@dataclass
class Rejection:
    key: str
    payload: dict[str, Any]
    reason: str
    status: int
    retryable: bool = False


@dataclass
class DeliveryStats:
    sent: int = 0
    requests: int = 0
    retries: int = 0
    rejected: list[Rejection] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


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

    `on_ack` is called with the keys of every batch as soon as Connect acknowledges it.
    """

    def __init__(self, config: ClientConfig) -> None:
        self.config = config
        self.limiter = RateLimiter(config.rate_limit)

    async def deliver(
        self,
        kind: str,
        items: Sequence[Item],
        on_ack: AckCallback | None = None,
        on_progress: Callable[[int], None] | None = None,
    ) -> DeliveryStats:
        """Send `items` to `/{kind}` (identify or track) and report what happened."""
        stats = DeliveryStats()
        size = min(self.config.batch_size, MAX_BATCH)
        batches = [list(items[i : i + size]) for i in range(0, len(items), size)]
        queue: asyncio.Queue[list[Item]] = asyncio.Queue()
        for batch in batches:
            queue.put_nowait(batch)
        limits = httpx.Limits(
            max_connections=self.config.concurrency,
            max_keepalive_connections=self.config.concurrency,
        )
        async with httpx.AsyncClient(
            base_url=self.config.base_url.rstrip("/"),
            headers={
                "X-Outbound-Key": self.config.api_key,
                "X-Outbound-Client": CLIENT_NAME,
                "Content-Type": "application/json",
            },
            timeout=self.config.timeout_s,
            limits=limits,
        ) as http:

            async def worker() -> None:
                while True:
                    try:
                        batch = queue.get_nowait()
                    except asyncio.QueueEmpty:
                        return
                    await self._send(http, kind, batch, stats, on_ack)
                    if on_progress:
                        on_progress(len(batch))

            workers = [asyncio.create_task(worker()) for _ in range(self.config.concurrency)]
            try:
                await asyncio.gather(*workers)
            except BaseException:
                for task in workers:
                    task.cancel()
                raise
        log.info(
            "delivered %s %s items in %s requests (%s retries, %s rejected, %s failed)",
            stats.sent,
            kind,
            stats.requests,
            stats.retries,
            len(stats.rejected),
            len(stats.failed),
        )
        return stats

    async def _send(
        self,
        http: httpx.AsyncClient,
        kind: str,
        batch: list[Item],
        stats: DeliveryStats,
        on_ack: AckCallback | None,
    ) -> None:
        """One batch with retries; a 400 is split in halves to find the bad items."""
        single = len(batch) == 1
        path = f"/{kind}" if single else f"/{kind}/batch"
        body = orjson.dumps(batch[0][1] if single else [payload for _, payload in batch])
        attempt = 0
        while True:
            await self.limiter.acquire()
            stats.requests += 1
            try:
                response = await http.post(path, content=body)
                status = response.status_code
            except (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError) as exc:
                status, response = 0, None
                log.debug("%s %s: %s", path, type(exc).__name__, exc)
            if 200 <= status < 300:
                stats.sent += len(batch)
                if on_ack:
                    on_ack([key for key, _ in batch])
                return
            if status == 401:
                raise AuthenticationError(
                    "Connect rejected the API key (401): check CONNECT_API_KEY for this environment"
                )
            if status == 400:
                reason = _error_message(response)
                if single:
                    key, payload = batch[0]
                    stats.rejected.append(Rejection(key, payload, reason, status))
                    return
                half = len(batch) // 2
                await self._send(http, kind, batch[:half], stats, on_ack)
                await self._send(http, kind, batch[half:], stats, on_ack)
                return
            if (status == 0 or status in RETRYABLE_STATUS or status >= 500) and (
                attempt < self.config.max_retries
            ):
                attempt += 1
                stats.retries += 1
                delay = self._backoff(attempt)
                if status == 429 and response is not None:
                    delay = max(_retry_after(response), 0.0) or delay
                    self.limiter.pause_until(delay)
                log.debug("%s answered %s, retry %s in %.2fs", path, status, attempt, delay)
                await asyncio.sleep(delay)
                continue
            reason = f"HTTP {status}: {_error_message(response)}" if status else "no response"
            for key, payload in batch:
                stats.rejected.append(Rejection(key, payload, reason, status, retryable=True))
                stats.failed.append(key)
            return

    def _backoff(self, attempt: int) -> float:
        base = min(self.config.backoff_max_s, self.config.backoff_base_s * 2 ** (attempt - 1))
        return base / 2 + random.uniform(0, base / 2)


def _retry_after(response: httpx.Response) -> float:
    try:
        return float(response.headers.get("Retry-After", "0"))
    except ValueError:
        return 1.0


def _error_message(response: httpx.Response | None) -> str:
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
    items: Sequence[Item],
    on_ack: AckCallback | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> DeliveryStats:
    """Blocking form of `ConnectClient.deliver`; raises DeliveryFailed when items failed."""
    stats = asyncio.run(ConnectClient(config).deliver(kind, items, on_ack, on_progress))
    return stats


__all__ = [
    "AuthenticationError",
    "ClientConfig",
    "ConnectClient",
    "DeliveryFailed",
    "DeliveryStats",
    "Rejection",
    "deliver",
]
