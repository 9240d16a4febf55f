"""Group membership in the sandbox, over real HTTP: identifies with `group_id` and
`group_attributes` (connect-api.md) as the group transform writes them, shown per group on
the user's profile."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pandas as pd
import pyarrow as pa
from connect_sync.connect.client import ClientConfig, deliver
from connect_sync.transforms.groups import group_payloads

T0 = datetime(2026, 11, 1, tzinfo=UTC)


def identify(sandbox, *items: dict) -> None:
    response = sandbox.http.post(
        "/v2/identify/batch",
        json=list(items),
        headers={"X-Outbound-Key": sandbox.api_key},
    )
    assert response.status_code == 200, response.text


def profile(sandbox, user_id: str) -> dict:
    response = httpx.get(f"{sandbox.url}/_sandbox/users/{user_id}", timeout=10)
    assert response.status_code == 200, response.text
    return response.json()


def test_group_payloads_are_accepted_and_shown_per_group(sandbox) -> None:
    rows = pa.table(
        {
            "id": ["m1", "m2", "m3"],
            "canonical_id": ["u1", "u1", "u1"],
            "group_id": ["g1", "g1", "g2"],
            "timestamp": pa.array([T0, T0.replace(hour=1), T0], pa.timestamp("us", tz="UTC")),
            "name": ["Acme", None, "Beta"],
            "plan": ["free", "pro", None],
            "employees": pa.array([10, 12, 3], pa.int64()),
        }
    ).to_pandas(types_mapper=pd.ArrowDtype)
    built = group_payloads(rows)
    config = ClientConfig(sandbox.api_url, sandbox.api_key, max_retries=0)
    stats = deliver(config, "identify", zip(built.keys, built.payloads, strict=True))
    assert stats.sent == 2 and not stats.rejected and not stats.failed

    shown = profile(sandbox, "u1")
    assert shown["groups"] == {
        "g1": {"name": "Acme", "plan": "pro", "employees": 12},
        "g2": {"name": "Beta", "employees": 3},
    }


def test_group_attributes_merge_per_group_over_calls(sandbox) -> None:
    identify(
        sandbox,
        {"user_id": "u1", "group_id": "g1", "group_attributes": {"plan": "free", "seats": 5}},
        {"user_id": "u1", "group_id": "g2", "group_attributes": {"plan": "pro"}},
        {"user_id": "u1", "group_id": "g1", "group_attributes": {"plan": "business"}},
        {"user_id": "u1", "group_attributes": {"industry": "Retail"}},  # the current group: g1
        {"user_id": "u2", "group_id": "g3"},
    )
    assert profile(sandbox, "u1")["groups"] == {
        "g1": {"plan": "business", "seats": 5, "industry": "Retail"},
        "g2": {"plan": "pro"},
    }
    assert profile(sandbox, "u2")["groups"] == {"g3": {}}  # a member, no attributes
    identify(sandbox, {"user_id": "u3", "email": "x@example.com"})
    assert profile(sandbox, "u3")["groups"] == {}


def test_a_merged_user_keeps_the_groups_of_both(sandbox) -> None:
    identify(
        sandbox,
        {"user_id": "anon-1", "group_id": "g1", "group_attributes": {"plan": "free", "n": 1}},
        {"user_id": "u1", "group_id": "g1", "group_attributes": {"plan": "pro"}},
        {"user_id": "u1", "group_id": "g2"},
        {"user_id": "u1", "previous_id": "anon-1"},
    )
    assert profile(sandbox, "u1")["groups"] == {"g1": {"plan": "pro", "n": 1}, "g2": {}}
    missing = httpx.get(f"{sandbox.url}/_sandbox/users/anon-1", timeout=10)
    assert missing.status_code == 404
