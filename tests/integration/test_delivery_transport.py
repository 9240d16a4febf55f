"""The transport's less travelled paths, over real HTTP: delivery through an HTTP proxy
(httpx's transport) and NO_PROXY, the hard read timeout on both lanes, and the reasons
recorded for error answers whose bodies are not JSON."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient, DeliveryStats

from tests.adversarial.rogue import Reply, Rogue, forwarding_to

PROXY_VARS = ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in (*PROXY_VARS, "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def items(n: int) -> list[tuple[str, dict]]:
    return [(f"m-{i}", {"user_id": f"u-{i % 3}", "event": "E", "timestamp": i}) for i in range(n)]


def deliver(config: ClientConfig, n: int = 150) -> DeliveryStats:
    return asyncio.run(ConnectClient(config).deliver("track", items(n)))


def test_delivery_goes_through_an_http_proxy(sandbox, no_proxy_env) -> None:
    with httpx.Client(trust_env=False) as upstream, Rogue(forwarding_to(upstream)) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        config = ClientConfig(sandbox.api_url, sandbox.api_key)
        asyncio.run(ConnectClient(config).check())
        stats = deliver(config)

    assert stats.sent == 150 and not stats.failed
    forwarded = [s.path for s in proxy.seen]
    assert forwarded and all(p.startswith(sandbox.api_url) for p in forwarded)
    assert sandbox.stats()["events"] == 150


def test_no_proxy_exempts_the_api_host(sandbox, no_proxy_env) -> None:
    with Rogue(Reply(502, b"proxy should not be used")) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        no_proxy_env.setenv("NO_PROXY", "127.0.0.1")
        stats = deliver(ClientConfig(sandbox.api_url, sandbox.api_key))

    assert stats.sent == 150 and proxy.seen == []


@pytest.mark.parametrize("through_proxy", [False, True])
def test_the_hard_read_timeout_ends_a_request_on_either_lane(
    through_proxy: bool, no_proxy_env
) -> None:
    with Rogue(Reply(200, delay_s=3)) as slow, Rogue(Reply(200, delay_s=3)) as proxy:
        if through_proxy:
            no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        config = ClientConfig(f"{slow.url}/v2", "k3y", timeout_s=0.3, max_retries=0)
        started = time.monotonic()
        stats = deliver(config, n=1)
        elapsed = time.monotonic() - started

    assert stats.sent == 0 and len(stats.failed) == 1
    assert stats.failed[0].retryable and "Timeout" in stats.failed[0].reason
    assert elapsed < 2.5  # slow_patience (4) x 0.3 s, not the server's 3 s
    assert bool(proxy.seen) == through_proxy


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (
            Reply(
                502, b"<html>\n <h1>502 Bad Gateway</h1>\n</html>", {"Content-Type": "text/html"}
            ),
            "HTTP 502: a non-JSON answer (text/html): <html> <h1>502 Bad Gateway</h1> </html>",
        ),
        (Reply(500), "HTTP 500: HTTP 500 with an empty body"),
        (Reply(503, b"x" * 5000), "HTTP 503: a non-JSON answer (no content type): xxx"),
        (Reply(500, b'{"error": "flat string"}'), 'HTTP 500: {"error": "flat string"}'),
    ],
)
def test_non_json_error_bodies_give_one_line_reasons(reply: Reply, expected: str) -> None:
    with Rogue(reply) as rogue:
        stats = deliver(ClientConfig(f"{rogue.url}/v2", "k3y", max_retries=0), n=1)

    reason = stats.failed[0].reason
    assert reason.startswith(expected) and "\n" not in reason and len(reason) < 400


def test_a_400_with_a_text_body_rejects_with_that_text() -> None:
    with Rogue(Reply(400, b"bad request: event missing", {"Content-Type": "text/plain"})) as r:
        stats = deliver(ClientConfig(f"{r.url}/v2", "k3y"), n=1)

    assert stats.rejected[0].reason == (
        "a non-JSON answer (text/plain): bad request: event missing"
    )
