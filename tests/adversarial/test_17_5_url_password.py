"""#17.5 (part): a password in CONNECT_API_URL was printed in an error (and stored in the run
report). The client masks it, and never shows the API key, in every message it makes."""

from __future__ import annotations

import asyncio
import socket

import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient
from connect_sync.connect.errors import ConnectUnreachable, EndpointError
from connect_sync.connect.masking import mask_url, redact

from tests.adversarial.rogue import Reply, Rogue, Seen

PASSWORD = "s3cr%40t-pw"  # percent-encoded '@'
KEY = "live-key-0123456789"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("https://bob:hunter2@api.example.com/v2", "https://bob:***@api.example.com/v2"),
        ("http://bob:p%40ss@127.0.0.1:8080/v2?x=1", "http://bob:***@127.0.0.1:8080/v2?x=1"),
        ("https://:only-pw@host/v2", "https://:***@host/v2"),
        ("https://bob@host/v2", "https://bob@host/v2"),
        ("https://api.outbound.io/v2", "https://api.outbound.io/v2"),
        ("bob:pw@host/v2", "bob:***@host/v2"),
        ("http://u:p@[::1]:80/v2", "http://u:***@[::1]:80/v2"),
        ("", ""),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_redact_masks_raw_and_decoded_forms() -> None:
    assert redact("a s3cr%40t b s3cr@t c", "s3cr%40t") == "a *** b *** c"
    assert redact("no secret", None, "") == "no secret"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_messages_and_reasons_hold_no_password() -> None:
    url = f"http://bob:{PASSWORD}@127.0.0.1:{free_port()}/v2"
    config = ClientConfig(url, KEY, max_retries=0, backoff_base_s=0.01)

    with pytest.raises(ConnectUnreachable) as caught:
        asyncio.run(ConnectClient(config).check())
    stats = asyncio.run(ConnectClient(config).deliver("track", [("m", {"user_id": "u"})]))

    texts = [str(caught.value), *(r.reason for r in stats.failed), repr(config)]
    assert "bob:***@" in texts[0]
    for text in texts:
        assert "s3cr" not in text and KEY not in text


def test_an_endpoint_error_masks_the_password() -> None:
    with Rogue(Reply(404, b"not here")) as rogue:
        url = rogue.url.replace("http://", f"http://bob:{PASSWORD}@") + "/v2"
        with pytest.raises(EndpointError) as caught:
            asyncio.run(ConnectClient(ClientConfig(url, KEY)).deliver("track", [("m", {})]))
    assert "bob:***@" in str(caught.value) and "s3cr" not in str(caught.value)


def test_an_error_body_echoing_the_key_is_redacted() -> None:
    def echo(seen: Seen) -> Reply:  # a proxy that shows the request's headers
        return Reply(502, f"bad gateway for key {seen.headers['X-Outbound-Key']}".encode())

    with Rogue(echo) as rogue:
        config = ClientConfig(f"{rogue.url}/v2", KEY, max_retries=0)
        stats = asyncio.run(ConnectClient(config).deliver("track", [("m", {"user_id": "u"})]))

    reason = stats.failed[0].reason
    assert "bad gateway for key ***" in reason and KEY not in reason


def test_a_url_of_another_scheme_is_refused_with_the_password_masked() -> None:
    url = f"ftp://bob:{PASSWORD}@127.0.0.1/v2"
    for run in (
        lambda client: client.check(),
        lambda client: client.deliver("track", [("m", {"user_id": "u"})]),
    ):
        with pytest.raises(EndpointError) as caught:
            asyncio.run(run(ConnectClient(ClientConfig(url, KEY))))
        assert "bob:***@" in str(caught.value) and "s3cr" not in str(caught.value)
