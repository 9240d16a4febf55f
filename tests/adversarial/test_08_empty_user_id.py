"""#17.8: an empty or whitespace-only `user_id` counts as null everywhere (who a row is,
the identity links, tracks and identifies), and a trait named `canonical_id` is a trait."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pandas as pd
import pyarrow as pa
import pytest
from connect_sync.transforms.columns import custom_columns
from connect_sync.transforms.events import track_payloads
from connect_sync.transforms.identity import resolve_identities
from connect_sync.transforms.identity_columns import CANONICAL, canonical_column, who
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import identify_payloads

T = datetime(2024, 5, 1, tzinfo=UTC)
BLANKS = ["", " ", "\t \n"]


def arrow_frame(columns: dict[str, list]) -> pd.DataFrame:
    return pa.table(columns).to_pandas(types_mapper=pd.ArrowDtype)


@pytest.mark.parametrize("blank", BLANKS)
def test_who_falls_back_to_the_anonymous_id(blank):
    frame = arrow_frame(
        {
            "user_id": [blank, "u1", None, blank],
            "anonymous_id": ["anon-1", "anon-2", "anon-3", " "],
        }
    )
    out = who(frame)
    assert out.iloc[:3].tolist() == ["anon-1", "u1", "anon-3"] and pd.isna(out.iloc[3])


@pytest.mark.parametrize("blank", BLANKS)
def test_blank_user_ids_link_nobody(blank):
    """Two anonymous people whose calls carried `user_id = ''` stay two people."""
    links = pd.DataFrame(
        {
            "from_id": ["anon-1", "anon-2", "anon-3"],
            "to_id": [blank, blank, "u3"],
            "kind": ["identify", "track", "identify"],
            "ts": pd.to_datetime([T, T, T], utc=True),
        }
    )
    graph = resolve_identities(links)
    resolved = graph.resolve(pd.Series(["anon-1", "anon-2", "anon-3"]))
    assert resolved.tolist() == ["anon-1", "anon-2", "u3"]


@pytest.mark.parametrize("blank", BLANKS)
def test_track_with_blank_user_id_is_sent_under_its_anonymous_id(blank):
    tracks = arrow_frame(
        {
            "id": ["e1", "e2"],
            "user_id": [blank, blank],
            "anonymous_id": ["anon-1", None],
            "event": ["signed_up", "signed_up"],
            "timestamp": pa.array([T, T], pa.timestamp("us", tz="UTC")),
        }
    )
    tracks[CANONICAL] = who(tracks)  # what the flows do (then through the identity graph)
    built = track_payloads(tracks)
    assert [orjson.loads(p)["user_id"] for p in built.payloads] == ["anon-1"]
    assert built.rejected["reason"].tolist() == ["missing_user_id"]  # e2: no id at all


@pytest.mark.parametrize("blank", BLANKS)
def test_identify_with_blank_user_id_is_kept_under_its_anonymous_id(blank):
    identifies = arrow_frame(
        {
            "id": ["m1"],
            "user_id": [blank],
            "anonymous_id": ["anon-1"],
            "timestamp": pa.array([T], pa.timestamp("us", tz="UTC")),
            "plan": ["pro"],
        }
    )
    identifies[CANONICAL] = who(identifies)
    latest = latest_traits(identifies)
    built = identify_payloads(latest, device_tokens(identifies))
    assert [orjson.loads(p) for p in built.payloads] == [
        {"user_id": "anon-1", "attributes": {"plan": "pro"}}
    ]


def test_a_trait_named_canonical_id_reaches_attributes():
    identifies = arrow_frame(
        {
            "id": ["m1", "m2"],
            "user_id": ["u1", "u1"],
            "timestamp": pa.array([T, T.replace(year=2025)], pa.timestamp("us", tz="UTC")),
            "canonical_id": ["crm-1", "crm-2"],
        }
    )
    identifies[CANONICAL] = who(identifies)
    assert canonical_column(identifies) == CANONICAL
    assert CANONICAL not in custom_columns(identifies.columns)
    latest = latest_traits(identifies)
    built = identify_payloads(latest, device_tokens(identifies))
    assert [orjson.loads(p) for p in built.payloads] == [
        {"user_id": "u1", "attributes": {"canonical_id": "crm-2"}}
    ]


def test_tracks_take_the_reserved_column_not_a_canonical_id_property():
    tracks = arrow_frame(
        {
            "id": ["e1"],
            "user_id": ["u1"],
            "event": ["signed_up"],
            "canonical_id": ["not-the-user"],
        }
    )
    tracks[CANONICAL] = who(tracks)
    assert [orjson.loads(p)["user_id"] for p in track_payloads(tracks).payloads] == ["u1"]


def test_frames_from_flows_that_still_say_canonical_id_are_read_as_before():
    """Until flows rename their column to CANONICAL, `canonical_id` is the user column."""
    identifies = arrow_frame(
        {"id": ["m1"], "canonical_id": ["u1"], "timestamp": [T], "plan": ["pro"]}
    )
    assert canonical_column(identifies) == "canonical_id"
    latest = latest_traits(identifies)
    assert latest.index.tolist() == ["u1"] and list(latest.columns) == ["plan"]
