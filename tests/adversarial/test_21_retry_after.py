"""#21: a 429's Retry-After must be honoured (the planted bug paused for the client's own
backoff instead). The sandbox records arrival times: with `Retry-After: 2` and a tiny
backoff, no retry may arrive before 2 s. And `_retry_after` parses seconds, HTTP dates,
garbage and a missing header."""

from __future__ import annotations

import asyncio
import time
from email.utils import formatdate

import pytest
from connect_sync.connect.client import ClientConfig, ConnectClient, _retry_after
from connect_sync.connect.transport import Answer


def test_no_retry_arrives_before_retry_after(sandbox) -> None:
    sandbox.set_faults(throttle_first=1, retry_after_s=2)
    config = ClientConfig(
        sandbox.api_url, sandbox.api_key, backoff_base_s=0.001, backoff_max_s=0.002
    )
    items = [(f"m-{i}", {"user_id": "u", "event": "E", "timestamp": i}) for i in range(5)]

    stats = asyncio.run(ConnectClient(config).deliver("track", items))

    arrivals = [a["at"] for a in sandbox.arrivals()]
    assert stats.sent == 5 and stats.rate_limited == 1
    assert len(arrivals) == 2
    assert arrivals[1] - arrivals[0] >= 1.99


def answer(retry_after: str | None) -> Answer:
    headers = {} if retry_after is None else {"retry-after": retry_after}
    return Answer(429, headers, b"")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("2", 2.0),
        ("0.5", 0.5),
        (" 7 ", 7.0),
        ("-3", 0.0),
        ("soon", 0.25),  # garbage: the client's own backoff
        ("", 0.25),
        (None, 0.25),
    ],
)
def test_retry_after_seconds_garbage_and_missing(header: str | None, expected: float) -> None:
    assert _retry_after(answer(header), 0.25) == expected
    assert _retry_after(None, 0.25) == 0.25


def test_retry_after_as_an_http_date() -> None:
    later = formatdate(time.time() + 30, usegmt=True)
    earlier = formatdate(time.time() - 30, usegmt=True)

    assert 28 <= _retry_after(answer(later), 0.25) <= 30.5
    assert _retry_after(answer(earlier), 0.25) == 0.0
