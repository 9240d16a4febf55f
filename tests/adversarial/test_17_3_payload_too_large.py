"""#17.3: a 413 marked whole 100-item batches as permanent rejections, without splitting.
Now a 413 (like a 400) is bisected down to the items too large, and only those are rejected."""

from __future__ import annotations

import asyncio

from connect_sync.connect.client import ClientConfig, ConnectClient


def track(i: int, padding: int = 0) -> tuple[str, dict]:
    return f"m-{i}", {
        "user_id": f"u-{i % 7}",
        "event": "Order Completed",
        "properties": {"pad": "x" * padding},
        "timestamp": 1_790_000_000 + i,
    }


def test_a_413_is_bisected_and_only_the_oversized_item_is_rejected(sandbox) -> None:
    sandbox.set_faults(max_body_bytes=4_000)  # ~30 ordinary items fit, 100 do not
    items = [track(i) for i in range(300)]
    items[123] = track(123, padding=5_000)  # too large even alone
    acked: list[str] = []
    config = ClientConfig(sandbox.api_url, sandbox.api_key, backoff_base_s=0.01)

    stats = asyncio.run(ConnectClient(config).deliver("track", items, acked.extend))

    assert [r.key for r in stats.rejected] == ["m-123"]
    rejection = stats.rejected[0]
    assert rejection.status == 413 and not rejection.retryable
    assert "too large" in rejection.reason
    assert not stats.failed and stats.sent == len(acked) == 299
    remote = sandbox.stats()
    assert remote["events"] == 299 and remote["duplicate_events"] == 0
