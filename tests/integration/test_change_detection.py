"""Change detection: a user is sent again only when their merged payload changed."""

from __future__ import annotations

from tests.integration.test_identity_pipeline import profile, sync, track
from tests.segment_rows import row, write_tables


def seed(url: str, schema: str) -> None:
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, anonymous_id="anon-1", user_id="u1", email="one@example.com", plan="free"),
                row(1, user_id="u2", email="two@example.com", plan="free", seats=2),
                row(2, user_id="u3", email="three@example.com", plan="team"),
                row(3, anonymous_id="anon-9", utm_source="ads"),
            ],
            "aliases": [row(4, previous_id="anon-2", user_id="u2")],
            "tracks": [
                track(5, "Logged In", user_id="u1"),
                track(6, "Logged In", anonymous_id="anon-2"),
            ],
        },
    )


def test_second_run_on_unchanged_data_sends_nothing(warehouse, sandbox) -> None:
    url, schema = warehouse
    seed(url, schema)
    first = sync(warehouse, sandbox)
    assert (first.users_sent, first.merges_sent, first.events_sent) == (4, 1, 2)
    requests = sandbox.stats()["requests"]

    second = sync(warehouse, sandbox)

    assert sandbox.stats()["requests"] == requests
    assert second.users_sent == second.merges_sent == second.events_sent == 0
    # How many rows a run reads again depends on the lookback window; none is sent.
    assert second.users_unchanged == second.users_considered > 0


def test_one_changed_trait_sends_exactly_one_identify(warehouse, sandbox) -> None:
    url, schema = warehouse
    seed(url, schema)
    sync(warehouse, sandbox)
    before = sandbox.stats()

    # u2 changes plan (a partial identify); u3 repeats what it said: only u2 is sent.
    write_tables(
        url,
        schema,
        {"identifies": [row(30, user_id="u2", plan="pro"), row(31, user_id="u3", plan="team")]},
    )
    report = sync(warehouse, sandbox)

    after = sandbox.stats()
    assert report.users_sent == 1
    assert after["identify_items"] - before["identify_items"] == 1
    assert after["requests"] - before["requests"] == 1
    assert report.users_unchanged == report.users_considered - 1
    person = profile(sandbox, "u2")
    assert person["email"] == "two@example.com"
    assert person["attributes"] == {"plan": "pro", "seats": 2}


def test_a_change_under_an_anonymous_id_of_the_user_counts(warehouse, sandbox) -> None:
    url, schema = warehouse
    seed(url, schema)
    sync(warehouse, sandbox)
    before = sandbox.stats()["identify_items"]

    write_tables(url, schema, {"identifies": [row(40, anonymous_id="anon-1", referrer="blog")]})
    report = sync(warehouse, sandbox)

    assert report.users_sent == 1
    assert sandbox.stats()["identify_items"] - before == 1
    assert profile(sandbox, "u1")["attributes"] == {"plan": "free", "referrer": "blog"}


def test_full_refresh_sends_every_user_again_but_no_event_twice(warehouse, sandbox) -> None:
    url, schema = warehouse
    seed(url, schema)
    sync(warehouse, sandbox)

    report = sync(warehouse, sandbox, full_refresh=True)

    assert report.users_sent == 4 and report.users_unchanged == 0
    assert report.events_sent == 0
    assert sandbox.stats()["duplicate_events"] == 0
