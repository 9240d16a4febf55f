"""Bounded memory for the message streams (issue #16): events, pages and screens read a
large window in time slices, one slice's rows in memory at a time, and send exactly what
one whole-window read sends, in the same order."""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import pytest
from connect_sync.flows.pipeline import SyncOptions, run_sync
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connect_sync.settings import Settings
from tests.segment_rows import drop_schemas, page_row, row, write_tables

USERS = ["u1", "u2", "u3"]
ANONYMOUS = ["a1", "a2", "a3"]
EVENTS = ["Signed Up", "Order Completed"]

message_rows = st.lists(
    st.tuples(
        st.sampled_from([None, *USERS]),  # user id
        st.sampled_from([None, *ANONYMOUS]),  # anonymous id
        st.one_of(st.none(), st.integers(0, 6 * 60)),  # minutes (None: no event time)
        st.sampled_from(EVENTS),
        st.sampled_from([None, "pro", "free"]),  # a property
        # a copy of an earlier message: None, or (which one, minutes later, loaded later)
        st.one_of(st.none(), st.tuples(st.integers(0, 30), st.integers(0, 200), st.booleans())),
    ),
    min_size=1,
    max_size=30,
)
alias_rows = st.lists(st.tuples(st.sampled_from(ANONYMOUS), st.sampled_from(USERS)), max_size=3)


def _warehouse(url: str, schema: str, messages: list, aliases: list) -> None:
    tracks: list[dict] = []
    properties: dict[str, list[dict]] = {}
    pages: list[dict] = []
    for user, anonymous, minutes, event, plan, copy in messages:
        if copy is not None and tracks:
            k, later, reloaded = copy
            original = tracks[k % len(tracks)]
            moved = None if original["timestamp"] is None else 0
            again = row(
                later if moved is not None else 0,
                id=original["id"],
                user_id=original["user_id"],
                anonymous_id=original["anonymous_id"],
                event=original["event"],
                event_text=original["event_text"],
                loaded=500 + later if reloaded else None,
            )
            if moved is None:
                again["timestamp"] = None
            tracks.append(again)
            properties[original["event"]].append({**again, "plan": f"copy-{later}"})
            continue
        table = event.lower().replace(" ", "_")  # Segment's `event`: the event's table
        track = row(
            minutes or 0, user_id=user, anonymous_id=anonymous, event=table, event_text=event
        )
        if minutes is None:
            track["timestamp"] = None
        tracks.append(track)
        properties.setdefault(table, []).append({**track, "plan": plan})
        page = page_row(minutes or 0, name=event, user_id=user, anonymous_id=anonymous)
        if minutes is None:
            page["timestamp"] = None
        pages.append(page)
    links = [row(0, previous_id=p, user_id=u) for p, u in aliases]
    write_tables(url, schema, {"tracks": tracks, "pages": pages, "aliases": links, **properties})


def _dry(url: str, schema: str, tmp: Path, name: str, **options: object) -> bytes:
    out = tmp / f"{name}.jsonl"
    report = run_sync(
        Settings(
            warehouse_url=url,
            source_schema=schema,
            state_url=f"duckdb:///{tmp / f'{name}-state.duckdb'}",
            journal_dir=tmp / f"{name}-journal",
            chunk_size=2,
            bucket_rows=options.pop("bucket_rows"),
        ),
        SyncOptions(streams=("aliases", "events", "pages"), dry_run=True, output=out, **options),
    )
    assert report.status == "succeeded", report.error
    return out.read_bytes()


def _same_payloads_sliced_or_not(url: str, schema: str, tmp: Path) -> None:
    whole = _dry(url, schema, tmp, "whole", bucket_rows=10**9)
    assert _dry(url, schema, tmp, "sliced", bucket_rows=2) == whole
    # an audience's users only (scoped: counted and looked up per slice)
    audience = tmp / "signed_up.sql"
    audience.write_text(
        "SELECT user_id FROM {schema}.tracks WHERE event = 'Signed Up'\n"
        "UNION SELECT anonymous_id FROM {schema}.tracks WHERE event = 'Signed Up'\n"
    )
    whole = _dry(url, schema, tmp, "aw", bucket_rows=10**9, audience=str(audience))
    assert _dry(url, schema, tmp, "as", bucket_rows=2, audience=str(audience)) == whole


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_rows, aliases=alias_rows)
def test_sliced_and_whole_message_windows_send_the_same_payloads_duckdb(
    messages: list, aliases: list
) -> None:
    with tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        url = f"duckdb:///{tmp / 'warehouse.duckdb'}"
        _warehouse(url, "segment", messages, aliases)
        _same_payloads_sliced_or_not(url, "segment", tmp)


@settings(max_examples=3, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(messages=message_rows, aliases=alias_rows)
def test_sliced_and_whole_message_windows_send_the_same_payloads_postgres(
    postgres_url: str, messages: list, aliases: list
) -> None:
    schema = f"t_{uuid.uuid4().hex[:10]}"
    try:
        with tempfile.TemporaryDirectory() as folder:
            _warehouse(postgres_url, schema, messages, aliases)
            _same_payloads_sliced_or_not(postgres_url, schema, Path(folder))
    finally:
        drop_schemas(postgres_url, schema)


@pytest.mark.parametrize("warehouse", ["duckdb", "postgres"], indirect=True)
def test_a_message_stored_in_two_slices_is_sent_once_with_its_latest_properties(
    warehouse: tuple[str, str], tmp_path: Path
) -> None:
    """Two copies of one message with event times hours apart fall in two slices: the
    first (oldest) is sent, once, with the properties of the copy loaded last (stored
    first: which copy wins does not depend on the order rows are read in)."""
    url, schema = warehouse
    first = row(0, id="m-twice", user_id="u1", event="signed_up", event_text="Signed Up")
    again = row(180, id="m-twice", user_id="u1", event="signed_up", event_text="Signed Up",
                loaded=400)  # fmt: skip
    others = [row(60 * h, user_id="u2", event="signed_up", event_text="Signed Up")
              for h in range(1, 6)]  # fmt: skip
    write_tables(url, schema, {
        "tracks": [first, again, *others],
        "signed_up": [{**again, "plan": "pro"}, {**first, "plan": "free"},  # read order
                      *({**o, "plan": "free"} for o in others)],
    })  # fmt: skip
    whole = _dry(url, schema, tmp_path, "whole", bucket_rows=10**9)
    sliced = _dry(url, schema, tmp_path, "sliced", bucket_rows=1)
    assert sliced == whole
    sent = [line for line in sliced.splitlines() if b'"u1"' in line]
    assert len(sent) == 1 and b'"pro"' in sent[0]
