"""#18.5: an unreachable API retried for 183 s and recorded 3,521 rejections. `check()`
(the client's and ApiOutbox's preflight) fails in seconds with one line, before any data
is read: ConnectUnreachable, AuthenticationError or EndpointError (exit 2)."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.errors import (
    AuthenticationError,
    ConnectConfigurationError,
    ConnectUnreachable,
    EndpointError,
)
from connect_sync.connect.outbox import ApiOutbox, DryRunOutbox

from tests.adversarial.rogue import Reply, Rogue


def check(url: str, key: str = "k3y") -> None:
    asyncio.run(ConnectClient(ClientConfig(url, key)).check())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fails_fast(url: str, error: type[Exception], key: str = "k3y") -> str:
    started = time.monotonic()
    with pytest.raises(error) as caught:
        check(url, key)
    assert time.monotonic() - started < 8
    message = str(caught.value)
    assert isinstance(caught.value, ConnectConfigurationError) and "\n" not in message
    return message


def test_connection_refused_fails_in_seconds_with_one_line() -> None:
    message = fails_fast(f"http://127.0.0.1:{free_port()}/v2", ConnectUnreachable)
    assert "cannot reach the Connect API" in message and "CONNECT_API_URL" in message


def test_an_unknown_host_fails_in_seconds() -> None:
    fails_fast("http://connect-sync-test.invalid/v2", ConnectUnreachable)


def test_tls_to_a_plain_http_server_fails_in_seconds(sandbox) -> None:
    fails_fast(sandbox.api_url.replace("http://", "https://"), ConnectUnreachable)


def test_a_wrong_key_is_an_authentication_error(sandbox) -> None:
    message = fails_fast(sandbox.api_url, AuthenticationError, key="wrong-key")
    assert "CONNECT_API_KEY" in message


def test_a_url_that_is_not_the_api_is_an_endpoint_error(sandbox) -> None:
    fails_fast(sandbox.url, EndpointError)  # no /v2
    with Rogue(Reply(200, b"<html>portal</html>", {"Content-Type": "text/html"})) as rogue:
        assert "not the Connect API" in fails_fast(f"{rogue.url}/v2", EndpointError)


def test_a_server_that_never_answers_fails_within_the_check_timeout() -> None:
    with Rogue(Reply(200, delay_s=30)) as rogue:
        started = time.monotonic()
        with pytest.raises(ConnectUnreachable):
            config = ClientConfig(f"{rogue.url}/v2", "k3y", timeout_s=0.5)
            asyncio.run(ConnectClient(config).check())
        assert time.monotonic() - started < 3


def test_a_good_api_and_key_pass_and_change_nothing(sandbox) -> None:
    ApiOutbox(ClientConfig(sandbox.api_url, sandbox.api_key)).check()
    DryRunOutbox(None).check()  # a dry run needs no API

    stats = sandbox.stats()
    assert stats["requests"] == stats["users"] == stats["rejected_items"] == 0


def test_a_5xx_or_429_still_means_connect_is_there(sandbox) -> None:
    sandbox.set_faults(error_rate=1.0)
    with Rogue(Reply(503, b"busy")) as rogue:
        check(f"{rogue.url}/v2")
    with Rogue(Reply(429, b"", {"Retry-After": "3"})) as rogue:
        check(f"{rogue.url}/v2")
