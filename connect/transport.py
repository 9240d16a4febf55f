"""HTTP for the delivery workers: httpcore (httpx's HTTP/1.1 engine) on plain asyncio streams.

Each delivery worker owns one keep-alive connection (a `Lane`). Requests go through
httpcore, so HTTP/1.1 framing, keep-alive, TLS and timeouts are httpx's own; only the
socket layer is swapped for a lean one over asyncio streams (`AsyncioBackend`), which
writes a request's head and body in one send instead of several through anyio. That
halves the client CPU per request, so on a small machine the API server, not the job,
is the bottleneck. Behind an HTTP(S)_PROXY the lane uses httpx's standard transport.
"""

from __future__ import annotations

import asyncio
import ssl
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx

#: What a failed exchange raises, from either stack: the request may not have been
#: processed (dropped connection, timeout, protocol error); it may be retried.
TRANSPORT_ERRORS = (
    httpcore.TimeoutException,
    httpcore.NetworkError,
    httpcore.RemoteProtocolError,
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)
#: The URL is not something we can send to (a configuration problem, never retried).
URL_ERRORS = (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol, httpx.InvalidURL)


@dataclass(frozen=True)
class Answer:
    """An HTTP response, read in full."""

    status_code: int
    headers: dict[str, str]  # lower-cased names
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", errors="replace")


class _Stream(httpcore.AsyncNetworkStream):
    """One TCP (or TLS) connection as httpcore wants it, over asyncio streams.

    Writes are gathered until httpcore reads the response, then sent in one go.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.pending: list[bytes] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        await self._flush(timeout)
        try:
            async with asyncio.timeout(timeout):
                return await self.reader.read(max_bytes)
        except TimeoutError as exc:
            raise httpcore.ReadTimeout(str(exc) or "read timed out") from exc
        except OSError as exc:
            raise httpcore.ReadError(str(exc) or type(exc).__name__) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        if buffer:
            self.pending.append(bytes(buffer))

    async def _flush(self, timeout: float | None) -> None:
        if not self.pending:
            return
        data = b"".join(self.pending)
        self.pending.clear()
        try:
            self.writer.write(data)
            async with asyncio.timeout(timeout):
                await self.writer.drain()
        except TimeoutError as exc:
            raise httpcore.WriteTimeout(str(exc) or "write timed out") from exc
        except (OSError, RuntimeError) as exc:  # RuntimeError: transport already closed
            raise httpcore.WriteError(str(exc) or type(exc).__name__) from exc

    async def aclose(self) -> None:
        self.pending.clear()
        self.writer.close()

    async def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):
                await self.writer.start_tls(ssl_context, server_hostname=server_hostname)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "TLS handshake timed out") from exc
        except (OSError, ssl.SSLError) as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return self

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable":  # the server closed an idle keep-alive connection
            return self.reader.at_eof()
        if info == "ssl_object":
            return self.writer.get_extra_info("ssl_object")
        if info == "client_addr":
            return self.writer.get_extra_info("sockname")
        if info == "server_addr":
            return self.writer.get_extra_info("peername")
        if info == "socket":
            return self.writer.get_extra_info("socket")
        return None


class AsyncioBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network layer on asyncio streams (works on uvloop too)."""

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        local = (local_address, 0) if local_address else None
        try:
            async with asyncio.timeout(timeout):
                reader, writer = await asyncio.open_connection(
                    host, port, local_addr=local, limit=1 << 20
                )
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(str(exc) or "connect timed out") from exc
        except OSError as exc:
            raise httpcore.ConnectError(str(exc) or type(exc).__name__) from exc
        return _Stream(reader, writer)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.UnsupportedProtocol("unix sockets are not supported here")

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class Lane:
    """One worker's keep-alive connection to the API, with fixed headers and timeouts."""

    def __init__(
        self, base_url: str, headers: dict[str, str], timeout: httpx.Timeout, tls: ssl.SSLContext
    ) -> None:
        self.base = base_url.rstrip("/")
        self.headers = list(headers.items())
        self.timeout = timeout.as_dict()
        proxy = environment_proxy(self.base)
        self.fallback: httpx.AsyncHTTPTransport | None = None
        self.pool: httpcore.AsyncConnectionPool | None = None
        if proxy:  # proxies of every kind: httpx's own transport
            self.fallback = httpx.AsyncHTTPTransport(
                verify=tls, proxy=proxy, limits=httpx.Limits(max_connections=1)
            )
        else:
            self.pool = httpcore.AsyncConnectionPool(
                ssl_context=tls,
                max_connections=1,
                max_keepalive_connections=1,
                network_backend=AsyncioBackend(),
            )

    async def post(self, path: str, body: bytes) -> Answer:
        url = self.base + path
        extensions = {"timeout": self.timeout}
        if self.pool is not None:
            response = await self.pool.request(
                "POST", url, headers=self.headers, content=body, extensions=extensions
            )
            headers = {
                k.decode("latin-1").lower(): v.decode("latin-1") for k, v in response.headers
            }
            return Answer(response.status, headers, response.content)
        assert self.fallback is not None
        request = httpx.Request(
            "POST", url, headers=self.headers, content=body, extensions=extensions
        )
        answer = await self.fallback.handle_async_request(request)
        try:
            content = await answer.aread()
        finally:
            await answer.aclose()
        return Answer(
            answer.status_code, {k.lower(): v for k, v in answer.headers.items()}, content
        )

    async def __aenter__(self) -> Lane:
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.pool is not None:
            await self.pool.aclose()
        if self.fallback is not None:
            await self.fallback.aclose()


def environment_proxy(url: str) -> str | None:
    """The proxy HTTPS_PROXY/HTTP_PROXY/ALL_PROXY name for this URL, unless NO_PROXY
    exempts its host (what httpx's client would pick up from the environment)."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.hostname is None or urllib.request.proxy_bypass_environment(parsed.hostname):
        return None
    proxies = urllib.request.getproxies_environment()
    return proxies.get(parsed.scheme) or proxies.get("all")
