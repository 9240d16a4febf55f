"""Bulk delivery to the Connect API: batches, concurrency, rate limit, retries, bisection.

Items stream from any iterable through a bounded queue into batches of at most 100, so a
run of millions of items never holds more than a few batches' bodies at once. A pool of
`concurrency` workers sends them, each over its own keep-alive HTTP/1.1 connection
(connect.transport); every request (first tries, retries and bisection halves alike)
takes a slot from the run's shared `RateLimiter`. Outcomes per batch:

- 2xx: acknowledged; `on_ack(keys)` is called at once, before the worker moves on.
- 2xx whose body is neither empty nor a Connect (JSON) answer, e.g. a proxy's HTML page:
  not acknowledged; retried like a 5xx, then `failed` (retryable).
- 400 or 413: nothing of the batch was stored; it is halved until the bad (or too large)
  items are isolated, each recorded as a `Rejection` with the API's message; the good ones
  are delivered.
- 401/403: `AuthenticationError` stops the whole delivery at once; 404/405 likewise
  `EndpointError` (the URL is not the Connect API).
- 429: every request of the run waits for `Retry-After`, then the batch is retried
  (429s have their own budget, RATE_LIMIT_PATIENCE times `max_retries`).
- 5xx, timeouts, dropped connections: retried with exponential backoff and jitter up
  to `max_retries`; then the batch is `failed` (retryable). After `concurrency` batches
  in a row failed like that, the API is considered down and the rest is left unsent.

Connect has no idempotency key, so re-sending a batch it processed stores it twice. To keep
that to the least, a slow answer is not abandoned at `timeout_s`: the client probes the
server on another connection and, while the server answers, keeps waiting for the batch's
own answer (up to `slow_patience` times `timeout_s`); and the number of requests in flight
shrinks by half when answers slow or time out, growing back by one per window (AIMD).

Messages and rejection reasons never hold the API key, and a password in the URL is masked.
"""

from __future__ import annotations

import asyncio
import logging
import random
import ssl
import time
import unicodedata
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from itertools import chain
from typing import Any

import httpcore
import httpx
import orjson
from connect_sync.connect.errors import (
    AuthenticationError,
    ConnectUnreachable,
    DeliveryFailed,
    EndpointError,
    InvalidApiKeyError,
)
from connect_sync.connect.masking import mask_url, redact, url_password
from connect_sync.connect.ratelimit import RateLimiter
from connect_sync.connect.transport import TRANSPORT_ERRORS, URL_ERRORS, Answer, Lane

log = logging.getLogger(__name__)

CLIENT_NAME = "segment-connect-sync/0.1.0"
MAX_BATCH = 100
RETRYABLE_STATUS = frozenset({408, 409, 425, 429})
AUTH_STATUS = frozenset({401, 403})
#: Connect refused these items (nothing of the request was stored): bisected, never retried.
SPLIT_STATUS = frozenset({400, 413})
#: A 2xx body larger than this is not parsed to check it is Connect's (only its head is).
MAX_CHECKED_BODY = 64 * 1024
#: The preflight check's timeouts and tries: it must fail in seconds, not minutes.
CHECK_TIMEOUT_S = 5.0
CHECK_ATTEMPTS = 2
#: An answer slower than this share of `timeout_s` counts as "slow" (halves the window).
SLOW_SHARE = 0.5
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
    """How to reach Connect. Raises `InvalidApiKeyError` (an `AuthenticationError`: exit 2)
    when the key cannot be an HTTP header value; surrounding whitespace is stripped."""

    base_url: str
    api_key: str = field(repr=False)
    concurrency: int = 8
    rate_limit: float | None = None
    max_retries: int = 8
    timeout_s: float = 30.0
    batch_size: int = MAX_BATCH
    backoff_base_s: float = 0.2
    backoff_max_s: float = 20.0
    #: how long a slow answer is waited for while the server answers probes (x timeout_s)
    slow_patience: float = 4.0

    def __post_init__(self) -> None:
        key = self.api_key.strip()
        object.__setattr__(self, "api_key", key)
        for position, char in enumerate(key, 1):
            if not " " <= char <= "~":
                raise InvalidApiKeyError(
                    f"CONNECT_API_KEY cannot be sent as an HTTP header: character {position} "
                    f"of {len(key)} is {_describe(char)}; copy the key again"
                )

    def __repr__(self) -> str:
        return (
            f"ClientConfig(base_url={mask_url(self.base_url)!r}, api_key='***', "
            f"concurrency={self.concurrency}, rate_limit={self.rate_limit}, "
            f"max_retries={self.max_retries}, timeout_s={self.timeout_s})"
        )

    def redact(self, text: str) -> str:
        """`text` without the API key or the URL's password."""
        return redact(text, self.api_key, url_password(self.base_url))


def _describe(char: str) -> str:
    """A character named without showing the secret it belongs to."""
    name = unicodedata.name(char, "") or ("a control character" if char < " " else "")
    return f"U+{ord(char):04X} {name}".rstrip()


class ConnectClient:
    """Sends identify and track items through the batch endpoints, keeping exact books.

    One client per run: its rate limiter is shared by every request of every `deliver`.
    """

    def __init__(self, config: ClientConfig, limiter: RateLimiter | None = None) -> None:
        self.config = config
        self.limiter = limiter or RateLimiter(config.rate_limit)
        self._tls: ssl.SSLContext | None = None

    def _lane(self, timeout_s: float | None = None) -> Lane:
        """A connection; its read timeout is the hard one (`slow_patience` x timeout_s):
        `_post` decides earlier whether a slow answer is still worth waiting for."""
        if self._tls is None:  # loading the CA bundle costs ~20 ms: once per client
            self._tls = httpx.create_ssl_context()
        headers = {
            "X-Outbound-Key": self.config.api_key,
            "X-Outbound-Client": CLIENT_NAME,
            "Content-Type": "application/json",
        }
        if timeout_s is None:
            timeout_s = self.config.timeout_s * max(1.0, self.config.slow_patience)
        connect = min(10.0, self.config.timeout_s, timeout_s)
        return Lane(
            self.config.base_url, headers, httpx.Timeout(timeout_s, connect=connect), self._tls
        )

    async def check(self) -> None:
        """Preflight: one cheap request (an empty identify batch) proving that the API
        answers and takes the key, in seconds, before any data is read.

        Raises `ConnectUnreachable` when no HTTP answer comes (connection refused, DNS,
        TLS, timeout: two tries of at most CHECK_TIMEOUT_S), `AuthenticationError` for
        401/403 (or `InvalidApiKeyError` earlier, from ClientConfig), `EndpointError` for
        404/405, a URL that is not http(s), or a 2xx that is not Connect's. Any other
        answer (400 for the empty batch, 429, 5xx) means Connect is there: returns None.
        All are `ConnectConfigurationError`s (exit 2); no message holds a secret."""
        where = mask_url(self.config.base_url)
        error = ""
        for attempt in range(CHECK_ATTEMPTS):
            if attempt:
                await asyncio.sleep(0.5)
            try:
                answer = await self._probe(min(CHECK_TIMEOUT_S, self.config.timeout_s))
            except URL_ERRORS as exc:
                raise EndpointError(
                    f"CONNECT_API_URL {where!r} is not an http(s) URL: "
                    f"{self.config.redact(str(exc))}"
                ) from None
            except TRANSPORT_ERRORS as exc:
                error = self.config.redact(_describe_error(exc))
                continue
            status = answer.status_code
            if status in AUTH_STATUS:
                raise AuthenticationError(
                    f"Connect rejected the API key ({status}): check CONNECT_API_KEY "
                    "for this environment"
                )
            if status in (404, 405):
                raise EndpointError(
                    f"Connect answered {status} at {where}: check CONNECT_API_URL; "
                    "it must end in /v2"
                )
            if 200 <= status < 300 and (why := _not_connect(answer)):
                raise EndpointError(
                    f"{where} is not the Connect API ({self.config.redact(why)}): "
                    "check CONNECT_API_URL"
                )
            if status == 429 or status >= 500:
                log.warning("Connect preflight: %s answered HTTP %s", where, status)
            return
        raise ConnectUnreachable(
            f"cannot reach the Connect API at {where} ({error}): check CONNECT_API_URL "
            "and the network"
        )

    async def _probe(self, timeout_s: float) -> Answer:
        """The preflight request on a connection of its own (no data, nothing stored)."""
        async with self._lane(timeout_s) as lane:
            return await lane.post("/identify/batch", b"[]")

    async def _alive(self, timeout_s: float) -> bool:
        """Whether the server still answers HTTP at all (any status) within `timeout_s`."""
        try:
            await self._probe(timeout_s)
        except (*TRANSPORT_ERRORS, *URL_ERRORS):
            return False
        return True

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
        run = _Run(kind, stats, on_ack, workers_n, _Window(workers_n))

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
        """Send one batch with retries; a 400 or 413 is split in halves to find the bad items."""
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
                response = await self._post(lane, run, path, body)
                status = response.status_code
            except URL_ERRORS as exc:
                raise EndpointError(
                    f"CONNECT_API_URL {mask_url(self.config.base_url)!r} is not an http(s) "
                    f"URL: {self.config.redact(str(exc))}"
                ) from None
            except TRANSPORT_ERRORS as exc:
                status = 0
                error = self.config.redact(_describe_error(exc))
            if 200 <= status < 300:
                assert response is not None
                if not response.content or not (why := _not_connect(response)):
                    stats.sent += len(batch)
                    run.consecutive_failures = 0
                    if run.on_ack:
                        run.on_ack([key for key, _ in batch])
                    return
                status, error = 0, self.config.redact(why)  # retryable: not acknowledged
            if status in AUTH_STATUS:
                raise AuthenticationError(
                    f"Connect rejected the API key ({status}): check CONNECT_API_KEY "
                    "for this environment"
                )
            if status in SPLIT_STATUS:
                if single:
                    key, payload = batch[0]
                    reason = self._error_message(response)
                    if status == 413:
                        reason = f"too large for Connect (HTTP 413: {reason})"
                    stats.rejected.append(Rejection(key, payload, reason, status))
                    return
                half = len(batch) // 2
                await self._send(lane, run, batch[:half])
                await self._send(lane, run, batch[half:])
                return
            if status in (404, 405):
                raise EndpointError(
                    f"Connect answered {status} for {path}: check CONNECT_API_URL "
                    f"(now {mask_url(self.config.base_url)}); it must end in /v2"
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
            reason = (
                error if status == 0 else f"HTTP {status}: {self._error_message(response)}"
            ) + (f" (after {attempt + throttled} retries)" if attempt + throttled else "")
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

    async def _post(self, lane: Lane, run: _Run, path: str, body: bytes) -> Answer:
        """One request inside the run's in-flight window.

        An answer slower than `timeout_s` is not given up at once (re-sending a request
        Connect is still processing would store it twice): the window shrinks, a probe
        goes to the server on another connection, and the answer is waited for until
        the probe finds the server dead (refused, reset: ReadTimeout is raised at once)
        or the lane's own timeout (`slow_patience` x `timeout_s`) ends it. Raises what the
        lane raises. The hot path costs one timer handle: no task, no extra await."""
        window = run.window
        await window.acquire()
        task = asyncio.current_task()
        assert task is not None
        watch = _Watch(task, path)
        timer = asyncio.get_running_loop().call_later(
            self.config.timeout_s, self._on_slow, watch, window
        )
        started = time.monotonic()
        outcome = BAD
        try:
            answer = await lane.post(path, body)
            slow = time.monotonic() - started > self.config.timeout_s * SLOW_SHARE
            outcome = BAD if slow or answer.status_code >= 500 else GOOD
            return answer
        except asyncio.CancelledError:
            if watch.dead and task.uncancel() == 0:  # our cancel, nobody else's
                raise httpcore.ReadTimeout(
                    f"no answer in {self.config.timeout_s:g} s, and the server no longer answers"
                ) from None
            outcome = NEUTRAL
            raise
        except TRANSPORT_ERRORS as exc:
            if not isinstance(exc, httpcore.TimeoutException | httpx.TimeoutException):
                outcome = NEUTRAL  # a cut connection says nothing about speed
            raise
        finally:
            watch.finished = True
            timer.cancel()
            if watch.probe is not None and not watch.probe.done():
                watch.probe.cancel()
            window.release(outcome)

    def _on_slow(self, watch: _Watch, window: _Window) -> None:
        """`timeout_s` passed without an answer: shrink the window and probe the server;
        if the probe finds it gone, cancel the waiting request (`_post` raises)."""
        window.decrease()
        remaining = self.config.timeout_s * (max(1.0, self.config.slow_patience) - 1)
        if remaining <= 0:
            return
        probe = asyncio.ensure_future(self._alive(remaining))
        watch.probe = probe

        def probed(done: asyncio.Future[bool]) -> None:
            if watch.finished or done.cancelled():
                return
            if done.result():
                log.info("Connect is slow but answering: still waiting for %s", watch.path)
            else:
                watch.dead = True
                watch.task.cancel()

        probe.add_done_callback(probed)

    def _error_message(self, response: Answer | None) -> str:
        return self.config.redact(_error_message(response))

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
    window: _Window
    consecutive_failures: int = 0
    stopped: bool = False


GOOD, NEUTRAL, BAD = "good", "neutral", "bad"


@dataclass(slots=True)
class _Watch:
    """One request that may turn slow: the task waiting for it, and its probe."""

    task: asyncio.Task[Any]
    path: str
    probe: asyncio.Future[bool] | None = None
    dead: bool = False  # the probe found the server gone: the task was cancelled
    finished: bool = False


class _Window:
    """How many requests may be in flight: AIMD between 1 and `ceiling`.

    Halved (at most once per round of requests in flight) when an answer is slow, times
    out or is a 5xx; grown by one after `limit` good answers. Workers beyond the limit
    wait their turn. Lives in one event loop (the `deliver` call's)."""

    def __init__(self, ceiling: int) -> None:
        self.ceiling = ceiling
        self.limit = ceiling
        self.in_flight = 0
        self.good = 0  # good answers since the limit last changed
        self.calm = 0  # answers to see before another halving counts
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def acquire(self) -> None:
        while self.in_flight >= self.limit:
            waiter = asyncio.get_running_loop().create_future()
            self.waiters.append(waiter)
            await waiter
        self.in_flight += 1

    def release(self, outcome: str = GOOD) -> None:
        self.in_flight -= 1
        if self.calm:
            self.calm -= 1
        if outcome == BAD:
            self.decrease()
        elif outcome == GOOD and self.limit < self.ceiling:
            self.good += 1
            if self.good >= self.limit:
                self.good = 0
                self.limit += 1
        free = self.limit - self.in_flight
        while free > 0 and self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                free -= 1

    def decrease(self) -> None:
        """Multiplicative decrease, once per round of requests in flight."""
        if self.calm:
            return
        self.limit = max(1, self.limit // 2)
        self.good = 0
        self.calm = self.in_flight
        log.info("Connect answers slowly: at most %d requests in flight", self.limit)


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
    """The API's message from an error answer; a non-JSON body (a proxy's page) is shown
    as its content type and its first characters, on one line."""
    if response is None:
        return "no response"
    try:
        parsed = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        if not response.content:
            return f"HTTP {response.status_code} with an empty body"
        kind = response.headers.get("content-type", "no content type")
        return f"a non-JSON answer ({kind}): {_one_line(response.text)}"
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict):  # Connect's shape: {"error": {"Message", "Code"}}
        return _one_line(str(error.get("Message") or error.get("message") or response.text))
    return _one_line(response.text)


def _one_line(text: str, limit: int = 300) -> str:
    """`text` with its whitespace runs as single spaces, at most `limit` characters."""
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _not_connect(answer: Answer) -> str:
    """Why a 2xx answer is not Connect's ("" when it is): Connect answers a success with an
    empty body (or JSON); anything else (a proxy's or captive portal's HTML page) means
    the items may not have reached Connect. Large bodies are judged by their head."""
    content = answer.content
    head = content[:64].lstrip()
    if not head:
        return "" if not content.strip() else _not_connect_reason(answer)
    if head[:1] in (b"{", b"["):
        if len(content) > MAX_CHECKED_BODY:
            return (
                ""
                if "json" in answer.headers.get("content-type", "json")
                else (_not_connect_reason(answer))
            )
        try:
            parsed = orjson.loads(content)
        except orjson.JSONDecodeError:
            return _not_connect_reason(answer)
        if isinstance(parsed, dict) and "error" in parsed:
            return f"HTTP {answer.status_code} carrying an error: {_error_message(answer)}"
        return ""
    return _not_connect_reason(answer)


def _not_connect_reason(answer: Answer) -> str:
    return (
        f"HTTP {answer.status_code} whose body is not a Connect answer, "
        f"so nothing is counted as delivered: {_error_message(answer)}"
    )


def _describe_error(exc: BaseException) -> str:
    """An exception as `Type: message` (or just the type when it has no message)."""
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


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
    "ConnectUnreachable",
    "DeliveryFailed",
    "DeliveryStats",
    "EndpointError",
    "InvalidApiKeyError",
    "Payload",
    "Rejection",
    "deliver",
]
