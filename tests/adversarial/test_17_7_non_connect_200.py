"""#17.7: a 200 with a non-empty, non-Connect body (a proxy's HTML page) counted as delivered.
Now a 2xx acknowledges only when its body is empty or JSON; otherwise the items stay
undelivered (retryable), with a reason that says why."""

from __future__ import annotations

import asyncio

from connect_sync.connect.client import ClientConfig, ConnectClient

from tests.adversarial.rogue import Reply, Rogue

HTML = b"<html><head><title>Service Unavailable</title></head>\n<body>try later</body></html>"


def items(n: int) -> list[tuple[str, dict]]:
    return [(f"m-{i}", {"user_id": "u", "event": "E", "timestamp": i}) for i in range(n)]


def config(url: str, **more) -> ClientConfig:
    return ClientConfig(f"{url}/v2", "k3y-for-tests", backoff_base_s=0.01, **more)


def test_a_200_html_page_acknowledges_nothing() -> None:
    reply = Reply(200, HTML, {"Content-Type": "text/html"})
    acked: list[str] = []
    with Rogue(reply) as rogue:
        stats = asyncio.run(
            ConnectClient(config(rogue.url, max_retries=1)).deliver(
                "track", items(250), acked.extend
            )
        )

    assert acked == [] and stats.sent == 0
    assert len(stats.failed) + stats.unsent == 250 and stats.failed
    reason = stats.failed[0].reason
    assert stats.failed[0].retryable and stats.failed[0].status == 0
    assert "not a Connect answer" in reason and "text/html" in reason
    assert "Service Unavailable" in reason and "\n" not in reason


def test_empty_and_json_2xx_bodies_are_acknowledged() -> None:
    for reply in (Reply(200), Reply(202, b"{}", {"Content-Type": "application/json"})):
        acked: list[str] = []
        with Rogue(reply) as rogue:
            stats = asyncio.run(
                ConnectClient(config(rogue.url)).deliver("track", items(120), acked.extend)
            )
        assert stats.sent == len(acked) == 120 and not stats.failed


def test_a_blank_2xx_body_is_acknowledged_but_a_page_after_blank_lines_is_not() -> None:
    """Only the head of a body is looked at: blanks alone are an empty answer, a page after
    more than a head's worth of blank lines is still a page."""
    for body, sent in ((b"\r\n", 5), (b"\n" * 80 + HTML, 0)):
        with Rogue(Reply(200, body, {"Content-Type": "text/html"})) as rogue:
            stats = asyncio.run(
                ConnectClient(config(rogue.url, max_retries=0)).deliver("track", items(5))
            )
        assert stats.sent == sent and len(stats.failed) == 5 - sent


def test_a_200_json_error_object_is_not_a_success() -> None:
    body = b'{"error": {"Message": "upstream unavailable", "Code": "bad_gateway"}}'
    with Rogue(Reply(200, body, {"Content-Type": "application/json"})) as rogue:
        stats = asyncio.run(
            ConnectClient(config(rogue.url, max_retries=0)).deliver("track", items(3))
        )

    assert stats.sent == 0 and len(stats.failed) == 3
    assert "upstream unavailable" in stats.failed[0].reason
