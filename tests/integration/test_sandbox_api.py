"""The sandbox's Connect API over real HTTP: every endpoint, each validation case, each merge
case, the batch limit, duplicates, the introspection routes and the pages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import orjson
import pytest
from connect_sync.connect.sandbox.server import SandboxProcess

Body = Any


def post(
    sandbox: SandboxProcess,
    path: str,
    body: Body = None,
    *,
    content: bytes | None = None,
    key: str | None = "default",
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-Outbound-Key"] = sandbox.api_key if key == "default" else key
    if content is None:
        content = orjson.dumps(body)
    return sandbox.http.post(f"/v2{path}", content=content, headers=headers)


def ok(sandbox: SandboxProcess, path: str, body: Body) -> None:
    response = post(sandbox, path, body)
    assert response.status_code == 200, response.text
    assert response.content == b""


def user(sandbox: SandboxProcess, user_id: str) -> dict[str, Any]:
    profile = sandbox.user(user_id)
    assert profile is not None, f"no user {user_id}"
    return profile


def assert_nothing_stored(sandbox: SandboxProcess) -> None:
    stats = sandbox.stats()
    assert stats["users"] == stats["events"] == 0
    assert stats["identify_items"] == stats["track_items"] == 0
    assert sandbox.http.get("/_sandbox/event_names").json() == []


def error_of(response: httpx.Response) -> dict[str, str]:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"Message", "Code"}
    assert body["error"]["Message"]
    return body["error"]


# -- authentication and malformed JSON ------------------------------------------------------

ALL_ENDPOINTS = [
    ("/identify", {"user_id": "u1"}),
    ("/identify/batch", [{"user_id": "u1"}]),
    ("/track", {"user_id": "u1", "event": "E"}),
    ("/track/batch", [{"user_id": "u1", "event": "E"}]),
    ("/apns/register", {"user_id": "u1", "token": "t"}),
    ("/gcm/register", {"user_id": "u1", "token": "t"}),
    ("/fcm/register", {"user_id": "u1", "token": "t"}),
    ("/apns/disable", {"user_id": "u1", "token": "t"}),
    ("/gcm/disable", {"user_id": "u1", "all": True}),
    ("/fcm/disable", {"user_id": "u1", "token": "t"}),
    ("/subscribe/all", {"user_id": "u1"}),
    ("/unsubscribe/all", {"user_id": "u1"}),
    ("/subscribe/campaigns", {"user_id": "u1", "campaign_ids": [1]}),
    ("/unsubscribe/campaigns", {"user_id": "u1", "campaign_ids": [1, 2]}),
]


@pytest.mark.parametrize(("path", "body"), ALL_ENDPOINTS)
def test_every_endpoint_wants_the_key_then_accepts(sandbox, path: str, body: Body) -> None:
    missing = post(sandbox, path, body, key=None)
    wrong = post(sandbox, path, body, key="not-the-key")

    assert missing.status_code == wrong.status_code == 401
    assert error_of(wrong)["Code"] == "unauthorized"
    assert_nothing_stored(sandbox)
    assert sandbox.stats()["unauthorized"] == 2

    ok(sandbox, path, body)
    assert sandbox.stats()["requests"] == 3
    assert sandbox.stats()["users"] == (0 if path.startswith("/track") else 1)


@pytest.mark.parametrize("path", ["/identify", "/track/batch", "/fcm/register"])
@pytest.mark.parametrize("content", [b"{nope", b"", b'{"user_id": "u1",}', b"\xff\xfe"])
def test_malformed_json_is_a_500_that_stores_nothing(sandbox, path: str, content: bytes) -> None:
    response = post(sandbox, path, content=content)

    assert response.status_code == 500
    assert error_of(response)["Code"] == "malformed_json"
    assert_nothing_stored(sandbox)


def test_only_post_is_allowed(sandbox) -> None:
    response = sandbox.http.get("/v2/identify")
    assert response.status_code == 405


# -- validation: every 400 stores nothing ----------------------------------------------------

LONG = "x" * 201
INVALID = [
    # identify
    ("/identify", {"email": "a@b.co"}, "missing_user_id"),
    ("/identify", {"user_id": None}, "missing_user_id"),
    ("/identify", {"user_id": ""}, "missing_user_id"),
    ("/identify", {"user_id": True}, "invalid_user_id"),
    ("/identify", {"user_id": {"id": 1}}, "invalid_user_id"),
    ("/identify", {"user_id": [1]}, "invalid_user_id"),
    ("/identify", {"user_id": "u1", "previous_id": {"x": 1}}, "invalid_previous_id"),
    ("/identify", {"user_id": "u1", "email": 5}, "invalid_email"),
    ("/identify", {"user_id": "u1", "first_name": ["Ada"]}, "invalid_first_name"),
    ("/identify", {"user_id": "u1", "last_name": 1.5}, "invalid_last_name"),
    ("/identify", {"user_id": "u1", "phone_number": 15551234567}, "invalid_phone_number"),
    ("/identify", {"user_id": "u1", "group_id": 7}, "invalid_group_id"),
    ("/identify", {"user_id": "u1", "timezone": "Mars/Olympus_Mons"}, "invalid_timezone"),
    ("/identify", {"user_id": "u1", "timezone": "GMT+2"}, "invalid_timezone"),
    ("/identify", {"user_id": "u1", "timezone": "europe/berlin"}, "invalid_timezone"),
    ("/identify", {"user_id": "u1", "timezone": "+02:00"}, "invalid_timezone"),
    ("/identify", {"user_id": "u1", "timezone": 2}, "invalid_timezone"),
    ("/identify", {"user_id": "u1", "apns": "token"}, "invalid_apns"),
    ("/identify", {"user_id": "u1", "gcm": [1, 2]}, "invalid_gcm"),
    ("/identify", {"user_id": "u1", "fcm": [""]}, "invalid_fcm"),
    ("/identify", {"user_id": "u1", "attributes": ["a"]}, "invalid_attributes"),
    ("/identify", {"user_id": "u1", "attributes": "plan=pro"}, "invalid_attributes"),
    ("/identify", {"user_id": "u1", "group_attributes": 3}, "invalid_group_attributes"),
    ("/identify", [{"user_id": "u1"}], "invalid_body"),
    ("/identify", "u1", "invalid_body"),
    # track
    ("/track", {"event": "Signed Up"}, "missing_user_id"),
    ("/track", {"user_id": False, "event": "Signed Up"}, "invalid_user_id"),
    ("/track", {"user_id": "u1"}, "missing_event"),
    ("/track", {"user_id": "u1", "event": ""}, "missing_event"),
    ("/track", {"user_id": "u1", "event": None}, "missing_event"),
    ("/track", {"user_id": "u1", "event": 42}, "invalid_event"),
    ("/track", {"user_id": "u1", "event": LONG}, "event_too_long"),
    ("/track", {"user_id": "u1", "event": "E", "properties": "a=1"}, "invalid_properties"),
    ("/track", {"user_id": "u1", "event": "E", "properties": [1]}, "invalid_properties"),
    ("/track", {"user_id": "u1", "event": "E", "timestamp": "2024-01-01"}, "invalid_timestamp"),
    ("/track", {"user_id": "u1", "event": "E", "timestamp": True}, "invalid_timestamp"),
    ("/track", {"user_id": "u1", "event": "E", "timestamp": [1]}, "invalid_timestamp"),
    # batches
    ("/identify/batch", {"user_id": "u1"}, "invalid_body"),
    ("/track/batch", {"user_id": "u1", "event": "E"}, "invalid_body"),
    ("/track/batch", [], "empty_batch"),
    # tokens and subscriptions
    ("/apns/register", {"user_id": "u1"}, "missing_token"),
    ("/gcm/register", {"token": "t"}, "missing_user_id"),
    ("/fcm/register", {"user_id": "u1", "token": 5}, "invalid_token"),
    ("/apns/disable", {"user_id": "u1"}, "missing_token"),
    ("/gcm/disable", {"user_id": "u1", "all": False}, "missing_token"),
    ("/fcm/disable", {"user_id": "u1", "all": "yes"}, "invalid_all"),
    ("/apns/disable", {"all": True}, "missing_user_id"),
    ("/unsubscribe/all", {}, "missing_user_id"),
    ("/subscribe/all", {"user_id": ["u1"]}, "invalid_user_id"),
    ("/unsubscribe/campaigns", {"user_id": "u1"}, "missing_campaign_ids"),
    ("/subscribe/campaigns", {"user_id": "u1", "campaign_ids": []}, "invalid_campaign_ids"),
    ("/unsubscribe/campaigns", {"user_id": "u1", "campaign_ids": 7}, "invalid_campaign_ids"),
    ("/unsubscribe/campaigns", {"user_id": "u1", "campaign_ids": [True]}, "invalid_campaign_ids"),
    ("/unsubscribe/campaigns", {"user_id": "u1", "campaign_ids": [1.5]}, "invalid_campaign_ids"),
]


@pytest.mark.parametrize(("path", "body", "code"), INVALID)
def test_invalid_requests_are_400_with_the_error_body_and_store_nothing(
    sandbox, path: str, body: Body, code: str
) -> None:
    response = post(sandbox, path, body)

    assert response.status_code == 400, response.text
    assert error_of(response)["Code"] == code
    assert_nothing_stored(sandbox)
    assert sandbox.stats()["rejected_items"] == (len(body) if isinstance(body, list) else 1)


def test_event_names_up_to_200_characters_and_any_iana_zone_are_accepted(sandbox) -> None:
    ok(sandbox, "/track", {"user_id": "u1", "event": "x" * 200})
    for zone in ("Europe/Berlin", "America/Argentina/Buenos_Aires", "UTC", "Asia/Kolkata"):
        ok(sandbox, "/identify", {"user_id": f"u-{zone}", "timezone": zone})

    assert sandbox.stats()["events"] == 1 and sandbox.stats()["users"] == 4
    assert user(sandbox, "u-Asia/Kolkata")["timezone"] == "Asia/Kolkata"


def test_unknown_and_null_fields_are_ignored(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "u1", "email": "a@b.co", "nickname": "x"})
    ok(sandbox, "/identify", {"user_id": "u1", "email": None, "attributes": None})

    profile = user(sandbox, "u1")
    assert profile["email"] == "a@b.co" and "nickname" not in profile


# -- batches ---------------------------------------------------------------------------------


def test_batches_take_up_to_100_items_and_reject_101_whole(sandbox) -> None:
    hundred = [{"user_id": f"u{i}", "event": "Batch Event", "timestamp": i} for i in range(100)]
    people = [{"user_id": f"p{i}", "email": f"p{i}@x.co"} for i in range(100)]
    ok(sandbox, "/track/batch", hundred)
    ok(sandbox, "/identify/batch", people)
    assert sandbox.stats()["events"] == 100 and sandbox.stats()["users"] == 100

    sandbox.reset()
    for path, item in (("/track/batch", hundred[0]), ("/identify/batch", people[0])):
        response = post(sandbox, path, [item] * 101)
        assert response.status_code == 400
        assert error_of(response)["Code"] == "batch_too_large"
        assert "100" in error_of(response)["Message"]
    assert_nothing_stored(sandbox)
    assert sandbox.stats()["rejected_items"] == 202


def test_one_bad_item_rejects_the_whole_batch_and_names_it(sandbox) -> None:
    batch = [{"user_id": f"u{i}", "event": "E"} for i in range(50)]
    batch[37] = {"user_id": "u37", "event": "y" * 201}
    people = [{"user_id": "a"}, {"user_id": "b", "timezone": "Nowhere/Land"}]

    track = post(sandbox, "/track/batch", batch)
    identify = post(sandbox, "/identify/batch", people)

    assert track.status_code == identify.status_code == 400
    assert error_of(track)["Message"].startswith("item 37:")
    assert error_of(identify)["Code"] == "invalid_timezone"
    assert error_of(identify)["Message"].startswith("item 1:")
    assert_nothing_stored(sandbox)
    assert sandbox.stats()["rejected_items"] == 52


# -- identify semantics ----------------------------------------------------------------------


def test_identify_upserts_fields_and_merges_attributes_key_by_key(sandbox) -> None:
    ok(
        sandbox,
        "/identify",
        {
            "user_id": "u1",
            "email": "old@x.co",
            "first_name": "Ada",
            "attributes": {"plan": "free", "seats": 1, "address": {"city": "Berlin"}},
            "group_id": "g1",
            "group_attributes": {"size": 5},
        },
    )
    ok(
        sandbox,
        "/identify",
        {
            "user_id": "u1",
            "email": "new@x.co",
            "last_name": "Lovelace",
            "timezone": "Europe/London",
            "attributes": {"plan": "pro", "trial": False, "address": {"zip": "N1"}},
            "group_attributes": {"tier": "gold"},
        },
    )

    profile = user(sandbox, "u1")
    assert profile["email"] == "new@x.co"
    assert (profile["first_name"], profile["last_name"]) == ("Ada", "Lovelace")
    assert profile["timezone"] == "Europe/London" and profile["group_id"] == "g1"
    assert profile["attributes"] == {
        "plan": "pro",
        "seats": 1,
        "trial": False,
        "address": {"zip": "N1"},  # key by key: a nested object is one value
    }
    assert profile["group_attributes"] == {"size": 5, "tier": "gold"}
    assert sandbox.stats()["users"] == 1 and sandbox.stats()["identify_items"] == 2


def test_numeric_and_string_user_ids_are_one_user(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": 1, "email": "one@x.co"})
    ok(sandbox, "/identify", {"user_id": "1", "first_name": "Uno"})
    ok(sandbox, "/identify/batch", [{"user_id": 1.0, "last_name": "Eins"}])
    ok(sandbox, "/track", {"user_id": 1, "event": "A"})
    ok(sandbox, "/track", {"user_id": "1", "event": "B"})

    profile = user(sandbox, "1")
    assert profile["user_id"] == "1"
    assert (profile["email"], profile["first_name"], profile["last_name"]) == (
        "one@x.co",
        "Uno",
        "Eins",
    )
    assert sandbox.stats()["users"] == 1
    assert [e["event"] for e in sandbox.events(user_id="1")] == ["A", "B"]
    assert {e["user_id"] for e in sandbox.events()} == {"1"}


def test_previous_id_merges_attributes_tokens_and_events_into_user_id(sandbox) -> None:
    ok(
        sandbox,
        "/identify",
        {
            "user_id": "anon-1",
            "email": "anon@x.co",
            "phone_number": "+1 555-123-4567",
            "attributes": {"plan": "free", "source": "ad"},
            "apns": ["apns-anon"],
            "fcm": ["fcm-anon"],
        },
    )
    ok(sandbox, "/track/batch", [{"user_id": "anon-1", "event": "Viewed", "timestamp": 1}] * 1)
    ok(sandbox, "/track", {"user_id": "anon-1", "event": "Clicked", "timestamp": 2})
    ok(sandbox, "/identify", {"user_id": "u1", "email": "u1@x.co", "attributes": {"plan": "pro"}})
    ok(sandbox, "/track", {"user_id": "u1", "event": "Signed Up", "timestamp": 3})

    ok(sandbox, "/identify", {"user_id": "u1", "previous_id": "anon-1", "apns": ["apns-u1"]})

    assert sandbox.user("anon-1") is None
    profile = user(sandbox, "u1")
    assert profile["email"] == "u1@x.co"  # the target's own values win
    assert profile["phone_number"] == "+1 555-123-4567"  # blanks filled from the old user
    assert profile["attributes"] == {"plan": "pro", "source": "ad"}
    assert profile["apns"] == ["apns-anon", "apns-u1"] and profile["fcm"] == ["fcm-anon"]
    assert profile["merged_ids"] == ["anon-1"]
    assert [e["event"] for e in sandbox.events(user_id="u1")] == ["Viewed", "Clicked", "Signed Up"]
    assert sandbox.events(user_id="anon-1") == []
    assert sandbox.stats()["users"] == 1 and sandbox.stats()["events"] == 3


def test_previous_id_of_a_user_only_seen_in_events_moves_the_events(sandbox) -> None:
    ok(sandbox, "/track", {"user_id": "anon-2", "event": "Viewed"})

    ok(sandbox, "/identify", {"user_id": 7, "previous_id": "anon-2"})

    assert [e["user_id"] for e in sandbox.events()] == ["7"]
    assert user(sandbox, "7")["merged_ids"] == ["anon-2"]
    assert sandbox.stats()["users"] == 1


def test_alias_chain_in_one_batch_ends_in_the_last_user(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "a", "attributes": {"from": "a", "a": 1}})
    ok(sandbox, "/track", {"user_id": "a", "event": "A"})
    ok(sandbox, "/track", {"user_id": "b", "event": "B"})

    ok(
        sandbox,
        "/identify/batch",
        [
            {"user_id": "b", "previous_id": "a", "attributes": {"from": "b"}},
            {"user_id": "c", "previous_id": "b", "email": "c@x.co"},
        ],
    )

    assert sandbox.user("a") is None and sandbox.user("b") is None
    profile = user(sandbox, "c")
    assert profile["attributes"] == {"from": "b", "a": 1}
    assert sorted(profile["merged_ids"]) == ["a", "b"]
    assert sorted(e["event"] for e in sandbox.events(user_id="c")) == ["A", "B"]
    assert sandbox.stats()["users"] == 1


def test_previous_id_equal_to_user_id_is_a_plain_upsert(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "u1", "previous_id": "u1", "email": "a@x.co"})
    assert user(sandbox, "u1")["merged_ids"] == []


# -- tokens and subscriptions ----------------------------------------------------------------


def test_tokens_register_through_identify_and_the_endpoints_and_disable(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "u1", "apns": ["a1"], "gcm": ["g1"], "fcm": ["f1"]})
    ok(sandbox, "/apns/register", {"user_id": "u1", "token": "a2"})
    ok(sandbox, "/apns/register", {"user_id": "u1", "token": "a2"})  # idempotent
    ok(sandbox, "/gcm/register", {"user_id": "u1", "token": "g2"})
    ok(sandbox, "/fcm/register", {"user_id": 2, "token": "f-two"})  # creates the user

    profile = user(sandbox, "u1")
    assert (profile["apns"], profile["gcm"], profile["fcm"]) == (["a1", "a2"], ["g1", "g2"], ["f1"])
    assert user(sandbox, "2")["fcm"] == ["f-two"]

    ok(sandbox, "/apns/disable", {"user_id": "u1", "token": "a1"})
    ok(sandbox, "/gcm/disable", {"user_id": "u1", "all": True})
    profile = user(sandbox, "u1")
    assert (profile["apns"], profile["gcm"], profile["fcm"]) == (["a2"], [], ["f1"])
    assert profile["disabled_tokens"] == {"apns": ["a1"], "gcm": ["g1", "g2"], "fcm": []}

    ok(sandbox, "/gcm/register", {"user_id": "u1", "token": "g1"})  # re-enables
    ok(sandbox, "/identify", {"user_id": "u1", "apns": ["a1"]})
    profile = user(sandbox, "u1")
    assert profile["gcm"] == ["g1"] and profile["disabled_tokens"]["gcm"] == ["g2"]
    assert profile["apns"] == ["a2", "a1"] and profile["disabled_tokens"]["apns"] == []


def test_subscribe_and_unsubscribe_all_and_campaigns(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "u1"})
    ok(sandbox, "/unsubscribe/campaigns", {"user_id": "u1", "campaign_ids": [10, 11, 12]})
    ok(sandbox, "/subscribe/campaigns", {"user_id": "u1", "campaign_ids": [11]})
    assert user(sandbox, "u1")["unsubscribed_campaigns"] == [10, 12]
    assert user(sandbox, "u1")["unsubscribed_all"] is False

    ok(sandbox, "/unsubscribe/all", {"user_id": "u1"})
    assert user(sandbox, "u1")["unsubscribed_all"] is True

    ok(sandbox, "/subscribe/all", {"user_id": "u1"})
    profile = user(sandbox, "u1")
    assert profile["unsubscribed_all"] is False and profile["unsubscribed_campaigns"] == []


# -- events, duplicates, introspection --------------------------------------------------------


def test_events_are_stored_as_sent_and_filtered_by_user_and_name(sandbox) -> None:
    ok(
        sandbox,
        "/track/batch",
        [
            {"user_id": "u1", "event": "Order", "properties": {"total": 9.5, "items": [1, 2]}},
            {"user_id": "u1", "event": "View", "timestamp": 1700000000.25},
            {"user_id": "u2", "event": "Order", "timestamp": 1700000001},
        ],
    )

    assert sandbox.events() == [
        {
            "user_id": "u1",
            "event": "Order",
            "properties": {"items": [1, 2], "total": 9.5},
            "timestamp": None,
        },
        {"user_id": "u1", "event": "View", "properties": {}, "timestamp": 1700000000.25},
        {"user_id": "u2", "event": "Order", "properties": {}, "timestamp": 1700000001},
    ]
    assert [e["user_id"] for e in sandbox.events(event="Order")] == ["u1", "u2"]
    assert [e["event"] for e in sandbox.events(user_id="u1", event="View")] == ["View"]
    assert sandbox.events(user_id="nobody") == []
    assert sandbox.stats()["users"] == 0  # tracks alone create no profile


def test_duplicate_events_are_counted(sandbox) -> None:
    first = {"user_id": "u1", "event": "Paid", "timestamp": 100, "properties": {"a": 1, "b": 2}}
    ok(sandbox, "/track", first)
    ok(sandbox, "/track", first)  # the same again
    ok(sandbox, "/track", {**first, "properties": {"b": 2, "a": 1}})  # key order is no matter
    ok(sandbox, "/track", {**first, "timestamp": 100.0})  # the same instant
    ok(sandbox, "/track/batch", [{**first, "timestamp": 101}, {**first, "timestamp": 101}])
    ok(sandbox, "/track", {**first, "properties": {"a": 1}})  # different properties
    ok(sandbox, "/track", {**first, "user_id": "u2"})  # another user
    ok(sandbox, "/track", {**first, "event": "Refunded"})  # another event

    stats = sandbox.stats()
    assert stats["events"] == stats["track_items"] == 9
    assert stats["duplicate_events"] == 4


def test_stats_count_requests_items_and_rejections(sandbox) -> None:
    ok(sandbox, "/identify/batch", [{"user_id": "a"}, {"user_id": "b"}])
    ok(sandbox, "/track/batch", [{"user_id": "a", "event": "E"}] * 3)
    post(sandbox, "/track/batch", [{"user_id": "a"}] * 4)  # 400
    post(sandbox, "/track", {"user_id": "a", "event": "E"}, key="wrong")  # 401

    assert sandbox.stats() == {
        "requests": 4,
        "identify_items": 2,
        "track_items": 3,
        "users": 2,
        "events": 3,
        "duplicate_events": 2,
        "rejected_items": 4,
        "rate_limited": 0,
        "errors_injected": 0,
        "connections_dropped": 0,
        "unauthorized": 1,
    }


def test_user_route_quotes_any_id_and_404s_unknown_ones(sandbox) -> None:
    odd = "user/with spaces?&#%"
    ok(sandbox, "/identify", {"user_id": odd, "email": "odd@x.co"})

    response = sandbox.http.get(f"/_sandbox/users/{quote(odd, safe='')}")
    missing = sandbox.http.get("/_sandbox/users/nobody")

    assert response.status_code == 200 and response.json()["email"] == "odd@x.co"
    assert missing.status_code == 404 and error_of(missing)["Code"] == "not_found"


def test_reset_forgets_everything(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "u1"})
    ok(sandbox, "/track", {"user_id": "u1", "event": "E"})
    ok(sandbox, "/track", {"user_id": "u1", "event": "E"})

    sandbox.reset()

    assert_nothing_stored(sandbox)
    assert set(sandbox.stats().values()) == {0}
    ok(sandbox, "/track", {"user_id": "u1", "event": "E"})
    assert sandbox.stats()["duplicate_events"] == 0  # the duplicate memory is gone too


# -- the pages ---------------------------------------------------------------------------------


def event_names(sandbox) -> dict[str, dict[str, Any]]:
    rows = sandbox.http.get("/_sandbox/event_names").json()
    return {row["event"]: row for row in rows}


def test_event_names_count_arrivals_in_the_last_24_hours(sandbox) -> None:
    ok(sandbox, "/track/batch", [{"user_id": "u", "event": "Old", "timestamp": 1}] * 3)
    ok(sandbox, "/track", {"user_id": "u", "event": "Both"})
    sandbox.http.post("/_sandbox/clock", json={"advance_s": 25 * 3600})
    # events that claim to be ancient but arrive now count as recent: arrival time matters
    ok(sandbox, "/track/batch", [{"user_id": "u", "event": "Both", "timestamp": 1}] * 2)

    names = event_names(sandbox)
    assert (names["Old"]["last_24h"], names["Old"]["total"]) == (0, 3)
    assert (names["Both"]["last_24h"], names["Both"]["total"]) == (2, 3)
    assert names["Both"]["last_seen"] > names["Old"]["last_seen"] + 24 * 3600

    page = sandbox.http.get("/").text
    assert "<tr data-event='Old'><td class='event'>" in page
    assert "<td class='count'>0</td><td class='count total'>3</td>" in page
    assert "<td class='count'>2</td><td class='count total'>3</td>" in page  # once, no yes/no


def test_events_page_lists_names_searches_and_escapes(sandbox) -> None:
    ok(sandbox, "/identify/batch", [{"user_id": "u1"}, {"user_id": "u2"}])
    ok(
        sandbox,
        "/track/batch",
        [{"user_id": "u1", "event": "Order Completed"}] * 3
        + [{"user_id": "u2", "event": "Product Viewed"}] * 2
        + [{"user_id": "u2", "event": "<script>alert(1)</script>"}],
    )

    page = sandbox.http.get("/")
    found = sandbox.http.get("/", params={"q": "order"}).text
    none = sandbox.http.get("/", params={"q": "nothing like it"}).text

    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<input type="search" name="q"' in page.text
    assert "2 users" in page.text and 'href="/users"' in page.text
    assert "<script>alert(1)</script>" not in page.text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "Order Completed" in found and "Product Viewed" not in found
    assert "1 of 3 event names match" in found
    assert "No event matches your search." in none


def test_user_lookup_page_shows_the_profile_and_events(sandbox) -> None:
    ok(sandbox, "/identify", {"user_id": "ada", "email": "ada@x.co", "attributes": {"k": "v"}})
    ok(sandbox, "/identify", {"user_id": "adam"})
    ok(sandbox, "/track", {"user_id": "ada", "event": "Logged In", "properties": {"via": "sso"}})

    found = sandbox.http.get("/users", params={"user_id": "ada"})
    listing = sandbox.http.get("/users")
    missing = sandbox.http.get("/users", params={"user_id": "ad"})

    assert found.status_code == 200
    assert "ada@x.co" in found.text and "Logged In" in found.text and "sso" in found.text
    assert "/_sandbox/users/ada" in found.text
    assert listing.status_code == 200 and "ada" in listing.text and "adam" in listing.text
    assert missing.status_code == 404 and "No user" in missing.text
    assert "users?user_id=adam" in missing.text  # suggestions by prefix
