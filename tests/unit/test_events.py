"""Track payloads: one test per rule of mapping.md's Events section."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pandas as pd
import pyarrow as pa
from connect_sync.transforms.events import (
    dedupe_messages,
    event_names,
    property_objects,
    property_texts,
    track_payloads,
)

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
UNIX_T0 = 1714564800


def frame(rows: list[dict[str, Any]], schema=None) -> pd.DataFrame:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    arrays = {k: pa.array([r.get(k) for r in rows], (schema or {}).get(k)) for k in keys}
    return pa.table(arrays).to_pandas(types_mapper=pd.ArrowDtype)


def track(mid: str, user: str | None = "u1", seconds: float = 0, **cols: Any) -> dict[str, Any]:
    ts = T0 + timedelta(seconds=seconds)
    return {
        "id": mid,
        "user_id": user,
        "anonymous_id": None,
        "canonical_id": user,
        "event": "signed_up",
        "event_text": "Signed Up",
        "timestamp": ts,
        "received_at": ts,
        **cols,
    }


def decoded(payloads: list[bytes]) -> list[dict[str, Any]]:
    """The payloads (JSON bytes) as dicts."""
    assert all(isinstance(p, bytes) for p in payloads)
    return [orjson.loads(p) for p in payloads]


def event_row(mid: str, **props: Any) -> dict[str, Any]:
    """A row of the event's own table: every `tracks` column plus its properties."""
    row = track(mid, **props)
    del row["canonical_id"]  # the job's column, not the warehouse's
    return row


def test_a_track_payload():
    tracks = frame([track("m1")])
    props = property_objects(frame([event_row("m1", plan="pro", seats=3, trial=True)]))
    built = track_payloads(tracks, props)
    assert built.message_ids == ["m1"]
    assert decoded(built.payloads) == [
        {
            "user_id": "u1",
            "event": "Signed Up",
            "properties": {"plan": "pro", "seats": 3, "trial": True},
            "timestamp": UNIX_T0,
        }
    ]
    assert built.rejected.empty and not built.quality


def test_event_name_is_the_text_as_sent_else_the_slug():
    tracks = frame(
        [
            track("m1", event_text="Order Completed "),
            track("m2", event_text=None, event="order_completed"),
            track("m3", event_text="  ", event="order_completed"),
        ],
        {"event_text": pa.string()},
    )
    names = ["Order Completed ", "order_completed", "order_completed"]  # as sent, not trimmed
    assert event_names(tracks).to_pylist() == names


def test_properties_come_from_the_event_table_typed_without_segment_columns():
    table = frame(
        [
            event_row(
                "m1",
                context_ip="10.0.0.1",
                uuid_ts=T0,
                revenue=9.99,
                items=2,
                coupon=None,
                note="",
                shipped_at=datetime(2024, 5, 2, 8, 30, 15, 500000, tzinfo=UTC),
            )
        ],
        {"coupon": pa.string()},
    )
    props = property_objects(table)
    assert orjson.loads(props["m1"]) == {
        "revenue": 9.99,
        "items": 2,
        "shipped_at": "2024-05-02T08:30:15Z",
    }


def test_property_objects_keep_the_last_row_of_a_duplicated_id():
    table = frame([event_row("m1", plan="a"), event_row("m1", plan="b")])
    props = property_objects(table)
    assert {k: orjson.loads(v) for k, v in props.items()} == {"m1": {"plan": "b"}}


def test_rows_without_properties_send_none():
    tracks = frame([track("m1"), track("m2")])
    props = property_objects(frame([event_row("m1", plan=None)], {"plan": pa.string()}))
    built = track_payloads(tracks, props)
    assert all("properties" not in p for p in decoded(built.payloads))
    assert "properties" not in decoded(track_payloads(tracks).payloads)[0]


def test_properties_by_row_give_the_payloads_properties_by_message_id_give():
    """The pipeline hands each chunk its properties in row order (no lookup by id); a
    rejected row (no user) and rows without properties (None, empty) are skipped alike."""
    tracks = frame([track("m1"), track("m2", user=None), track("m3"), track("m4")])
    table = frame(
        [event_row("m3", plan="b", seats=3), event_row("m1", plan="a"), event_row("m4")],
        {"plan": pa.string(), "seats": pa.int64()},
    )
    by_id = track_payloads(tracks, property_objects(table))
    texts = property_texts(table)  # rows m3, m1, m4: put them in the order of `tracks`
    by_row = track_payloads(tracks, texts.take(pa.array([1, None, 0, 2], pa.int64())))
    assert by_row.payloads == by_id.payloads and by_row.message_ids == ["m1", "m3", "m4"]
    assert [p.get("properties") for p in decoded(by_row.payloads)] == [
        {"plan": "a"},
        {"plan": "b", "seats": 3},
        None,
    ]


def test_timestamp_is_unix_seconds():
    tracks = frame([track("m1", seconds=0.25), track("m2", seconds=60)])
    stamps = [p["timestamp"] for p in decoded(track_payloads(tracks).payloads)]
    assert stamps == [UNIX_T0 + 0.25, UNIX_T0 + 60]


def test_over_long_event_names_are_rejected_with_a_reason():
    name = "x" * 200
    tracks = frame([track("ok", event_text=name), track("long", event_text=name + "é")])
    built = track_payloads(tracks)
    assert built.message_ids == ["ok"]
    assert built.rejected.to_dict("records") == [
        {"message_id": "long", "user_id": "u1", "reason": "event_name_too_long"}
    ]
    assert built.quality == {"event_name_too_long": 1}


def test_rows_without_a_user_are_rejected_with_a_reason():
    tracks = frame([track("m1", user=None), track("m2")], {"canonical_id": pa.string()})
    built = track_payloads(tracks)
    assert built.message_ids == ["m2"]
    assert built.rejected["reason"].tolist() == ["missing_user_id"]
    assert built.rejected["message_id"].tolist() == ["m1"]
    assert built.quality == {"missing_user_id": 1}


def test_anonymous_events_go_to_the_canonical_id():
    row = track("m1", user=None)
    row.update(anonymous_id="anon-1", canonical_id="user-9")
    assert decoded(track_payloads(frame([row])).payloads)[0]["user_id"] == "user-9"


def test_unicode_and_emoji_event_names_are_kept():
    tracks = frame([track("m1", event_text="Café ☕ Ordered 🎉")])
    assert decoded(track_payloads(tracks).payloads)[0]["event"] == "Café ☕ Ordered 🎉"


def test_dedupe_messages_keeps_the_first_row():
    rows = frame([track("m1", seconds=1), track("m1", seconds=2), track("m2")])
    deduped, dropped = dedupe_messages(rows)
    assert deduped["id"].tolist() == ["m1", "m2"] and dropped == 1


def test_no_tracks():
    built = track_payloads(frame([track("m1")]).iloc[0:0])
    assert built.payloads == [] and built.message_ids == []
    assert list(built.rejected.columns) == ["message_id", "user_id", "reason"]
