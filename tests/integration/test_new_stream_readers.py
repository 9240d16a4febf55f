"""Reading `pages`, `screens` and `groups` from real warehouses (DuckDB and PostgreSQL):
the rows of a window, the ids they touch, the rows of given ids; a missing table is a
stream with nothing to do."""

from __future__ import annotations

import importlib
import os
from types import SimpleNamespace

import orjson
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.transforms.columns import identify_read_columns
from connect_sync.transforms.groups import group_payloads
from connect_sync.transforms.messages import drop_repeated
from connect_sync.transforms.pages import page_payloads
from connect_sync.transforms.traits import chronological
from connect_sync.warehouse import demo
from connect_sync.warehouse import segment as segment_module
from connect_sync.warehouse.segment import SegmentSource, Window

from tests.segment_rows import COMMON, T0, at, group_row, page_row, row, write_tables

EVERYTHING = Window("uuid_ts")
PAGE_COLUMNS = [
    *COMMON,
    "name",
    "context_ip",
    "context_library_name",
    "path",
    "url",
]


def _pages() -> list[dict]:
    return [
        page_row(0, id="p1", anonymous_id="a1", name="Pricing", path="/pricing", url="u/p"),
        page_row(5, id="p2", anonymous_id="a1", user_id="u1", name=None, path="/", url="u/"),
        page_row(30, id="p3", anonymous_id="a2", name="", path="/docs", url="u/d"),
        page_row(60, id="p4", anonymous_id="a3", user_id="u3", name="Blog", path="/b", url="u/b"),
    ]


def _source(url: str, schema: str) -> SegmentSource:
    return SegmentSource(sa.create_engine(url), schema, chunk_size=2)


def test_calls_are_every_column_of_the_window_and_none_when_missing(warehouse) -> None:
    url, schema = warehouse
    rows = _pages()
    write_tables(url, schema, {"pages": [*rows, {**rows[0], "uuid_ts": at(90)}]})  # re-loaded
    source = _source(url, schema)

    frame = source.calls("pages", EVERYTHING)

    assert frame is not None and list(frame.columns) == PAGE_COLUMNS
    assert sorted(frame["id"]) == ["p1", "p1", "p2", "p3", "p4"]  # duplicates: the caller's
    assert frame["timestamp"].dtype == pd.ArrowDtype(pa.timestamp("us", tz="UTC"))
    early = source.calls("pages", Window("uuid_ts", T0, at(10)))
    assert early is not None and sorted(early["id"]) == ["p1", "p2"]
    by_received = source.calls("pages", Window("received_at", at(30), at(61)))
    assert by_received is not None and sorted(by_received["id"]) == ["p3", "p4"]
    assert source.calls("screens", EVERYTHING) is None
    assert source.calls("groups", EVERYTHING) is None


def test_calls_of_a_table_that_gained_a_column_later(warehouse) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"screens": [page_row(0, id="s1", user_id="u1", name="Home")]})
    write_tables(
        url, schema, {"screens": [page_row(9, id="s2", user_id="u1", name="Cart", items=3)]}
    )
    frame = _source(url, schema).calls("screens", EVERYTHING)
    assert frame is not None and frame.columns[-1] == "items"
    frame = frame.sort_values("id")
    assert frame["items"].isna().tolist() == [True, False]
    assert frame["items"].iloc[1] == 3


def test_touched_ids_in_a_table(warehouse) -> None:
    url, schema = warehouse
    write_tables(url, schema, {"pages": [*_pages(), page_row(70, id="p5")]})  # p5: no id at all
    source = _source(url, schema)

    assert sorted(source.touched_ids_in("pages", EVERYTHING)) == ["a1", "a2", "u1", "u3"]
    window = Window("uuid_ts", at(2), at(40))
    assert sorted(source.touched_ids_in("pages", window)) == ["a2", "u1"]
    missing = source.touched_ids_in("groups", EVERYTHING)
    assert isinstance(missing, pd.Series) and missing.empty


def test_touched_ids_of_identifies_read_through_the_generic_reader(warehouse) -> None:
    url, schema = warehouse
    identifies = [
        row(0, anonymous_id="a1"),
        row(1, anonymous_id="a1", user_id="u1"),
        row(2, anonymous_id="a2", user_id="u1"),
        row(50, anonymous_id="a3"),
    ]
    write_tables(url, schema, {"identifies": identifies})
    source = _source(url, schema)
    window = Window("uuid_ts", T0, at(10))
    assert sorted(source.touched_ids(window)) == ["a1", "u1"]
    generic = source.touched_ids_in("identifies", window)
    assert source.touched_ids(window).tolist() == generic.tolist()


def test_rows_for_ids_are_every_row_of_those_users(warehouse, monkeypatch) -> None:
    url, schema = warehouse
    groups = [
        group_row(0, id="g-1", anonymous_id="a1", name="Acme", employees=10),
        group_row(1, id="g-2", anonymous_id="a1", user_id="u1", plan="pro", employees=11),
        group_row(2, id="g-3", anonymous_id="a1", user_id="u9", group_id="g2", employees=12),
        group_row(3, id="g-4", anonymous_id="a4", user_id="u4", plan="free", employees=13),
        group_row(4, id="g-5", user_id="it's", group_id="g3", employees=14),
    ]
    write_tables(url, schema, {"groups": [*groups, {**groups[1], "uuid_ts": at(30)}]})
    monkeypatch.setattr(segment_module, "ID_CHUNK", 2)  # several IN lists where they are used
    source = _source(url, schema)

    read = source.rows_for_ids("groups", ["u1", "a1", "nobody", "it's"])

    assert read is not None and list(read.columns) == source.columns("groups")
    assert sorted(read["id"]) == ["g-1", "g-2", "g-2", "g-5"]  # duplicates: the caller's
    frame = drop_repeated(read, keep="last")  # as the groups stream keeps one per message
    # g-3 has a1 as its anonymous id but is u9's call: u9 is not asked for
    assert sorted(frame["id"]) == ["g-1", "g-2", "g-5"]
    assert frame.set_index("id").loc["g-2", "uuid_ts"] == pd.Timestamp(at(30))  # the last load
    assert frame["employees"].dtype == pd.ArrowDtype(pa.int64())
    assert source.rows_for_ids("screens", ["u1"]) is None
    none = source.rows_for_ids("groups", [])
    assert none is not None and none.empty and list(none.columns) == list(frame.columns)


def test_identifies_of_ids_unchanged_by_the_generic_reader(warehouse, monkeypatch) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, id="i1", anonymous_id="a1", plan="free", context_ip="1"),
                row(1, id="i2", anonymous_id="a1", user_id="u1", plan="pro", context_ip="1"),
                row(2, id="i3", anonymous_id="a2", user_id="u2", plan="pro", context_ip="1"),
            ]
        },
    )
    monkeypatch.setattr(segment_module, "ID_CHUNK", 1)
    source = _source(url, schema)
    read = source.identifies(["a1", "u1"], identify_read_columns(source.columns("identifies")))
    frame = drop_repeated(read, keep="last")  # i2 is a1's and u1's: read once per id chunk
    assert sorted(frame["id"]) == ["i1", "i2"]
    assert "context_ip" not in frame.columns  # still only the columns the users stream reads


@pytest.mark.parametrize("table", ["pages", "screens"])
def test_read_pages_become_track_payloads(warehouse, table) -> None:
    url, schema = warehouse
    write_tables(url, schema, {table: [*_pages(), {**_pages()[0], "uuid_ts": at(90)}]})
    rows = _source(url, schema).calls(table, EVERYTHING)
    assert rows is not None
    rows = drop_repeated(rows).take(chronological(drop_repeated(rows)))
    links = {"a1": "u1"}  # as the identity graph would resolve them
    who = rows["user_id"].fillna(rows["anonymous_id"]).astype(str)
    rows = rows.assign(canonical_id=who.map(lambda i: links.get(i, i)))
    built = page_payloads(rows, table)
    prefix = "[Segment Page]" if table == "pages" else "[Segment Screen]"
    assert built.message_ids == ["p1", "p2", "p3", "p4"]
    assert orjson.loads(built.payloads[0]) == {
        "user_id": "u1",  # the anonymous view before sign-up, attributed to the user
        "event": f"{prefix} Pricing",
        "properties": {"name": "Pricing", "path": "/pricing", "url": "u/p"},
        "timestamp": int(T0.timestamp()),
    }
    assert [orjson.loads(p)["event"] for p in built.payloads][1:] == [
        prefix,
        prefix,
        f"{prefix} Blog",
    ]


def test_read_groups_become_group_identifies(warehouse) -> None:
    url, schema = warehouse
    first = [
        group_row(0, id="g-1", user_id="u1", name="Acme", plan="free", employees=5),
        group_row(2, id="g-3", user_id="u1", group_id="g2", name="Beta", employees=7),
    ]
    write_tables(url, schema, {"groups": first})  # employees: an integer column
    write_tables(url, schema, {"groups": [group_row(1, id="g-2", user_id="u1", plan="pro")]})
    rows = _source(url, schema).rows_for_ids("groups", ["u1"])
    assert rows is not None and len(rows) == 3
    built = group_payloads(rows.assign(canonical_id=rows["user_id"]))
    assert built.payloads == [
        b'{"group_attributes":{"employees":5,"name":"Acme","plan":"pro"},'
        b'"group_id":"g1","user_id":"u1"}',
        b'{"group_attributes":{"employees":7,"name":"Beta"},"group_id":"g2","user_id":"u1"}',
    ]


DIALECTS = {
    "duckdb": ("duckdb_engine", "duckdb://"),
    "postgresql": ("psycopg", "postgresql+psycopg://"),
    "redshift": ("sqlalchemy_redshift", "redshift+psycopg2://"),
    "snowflake": ("snowflake.sqlalchemy", "snowflake://"),
    "bigquery": ("sqlalchemy_bigquery", "bigquery://"),
}


@pytest.mark.parametrize("name", list(DIALECTS))
def test_the_call_table_statements_compile_for_every_dialect(name: str) -> None:
    module, url = DIALECTS[name]
    if os.environ.get("CI") == "true":  # the dev extra installs every dialect: none may skip
        importlib.import_module(module)
    else:
        pytest.importorskip(module)
    cls = sa.engine.make_url(url).get_dialect()
    dialect = cls(dbapi=cls.import_dbapi())
    source = SegmentSource(SimpleNamespace(dialect=dialect), "web_prod")  # type: ignore[arg-type]
    columns = ["id", "user_id", "anonymous_id", "timestamp", "name", "group_id", "select"]
    ids = {"id_list" if name == "duckdb" else "ids": ["a", "b"]}
    statements = [
        (
            source.clause(
                "calls_window", EVERYTHING.params, table="pages", window="uuid_ts", columns=columns
            ),
            EVERYTHING.params,
        ),
        (
            source.clause(
                "touched_ids", EVERYTHING.params, identifies="screens", window="received_at"
            ),
            EVERYTHING.params,
        ),
        (source.clause("identifies_for_ids", ids, identifies="groups", columns=columns), ids),
    ]
    quote = dialect.identifier_preparer.quote
    for clause, params in statements:
        compiled = str(
            clause.bindparams(**params).compile(
                dialect=dialect, compile_kwargs={"render_postcompile": True}
            )
        )
        assert "{" not in compiled and ":since" not in compiled and ":ids" not in compiled
        assert any(quote(t) in compiled for t in ("pages", "screens", "groups")), compiled
        assert quote("web_prod") in compiled


# -- the demo warehouse's call tables --------------------------------------------------------

#: (rows, first id, last id) of the demo's original tables at 2000 users, seed 7, as built
#: before the call tables existed: adding tables must not change them.
DEMO_2000 = {
    "identifies": (4055, "idf-2b123d79c3ba9bad", "idf-082e2bcfb040bfd0"),
    "aliases": (521, "als-0c9918a478a9d0f6", "als-291cd0362eb1ab0b"),
    "tracks": (5020, "trk-22a5f0f984b70b4f", "trk-28306d033457bc81"),
    "signed_up": (1216, "trk-3cb8267980d0b130", "trk-2e694989be810823"),
    "product_viewed": (1258, "trk-0b9b5865176f3fd7", "trk-0ffa30ac2852c5e6"),
    "order_completed": (1276, "trk-1914b79a1ae61343", "trk-33e510448b57e715"),
    "subscription_started": (1269, "trk-22a5f0f984b70b4f", "trk-28306d033457bc81"),
}


def test_the_demo_keeps_its_tables_and_builds_the_call_tables_from_their_own_stream(
    monkeypatch,
) -> None:
    frames = demo.build_frames(2000, seed=7)
    assert list(frames) == [*DEMO_2000, *demo.CALL_TABLES]
    for table, (rows, first, last) in DEMO_2000.items():
        assert (len(frames[table]), frames[table]["id"].iloc[0], frames[table]["id"].iloc[-1]) == (
            rows,
            first,
            last,
        ), table
    monkeypatch.setattr(demo, "CALLS_STREAM", 999)
    other = demo.build_frames(2000, seed=7)
    for table in DEMO_2000:
        pd.testing.assert_frame_equal(other[table], frames[table])
    assert not other["pages"]["id"].equals(frames["pages"]["id"])


def test_the_demo_call_tables_are_segment_shaped_and_messy(tmp_path) -> None:
    path = tmp_path / "demo.duckdb"
    counts = demo.build_demo_warehouse(path, users=600, seed=7)
    source = SegmentSource(sa.create_engine(f"duckdb:///{path}"), "segment")
    pages = source.calls("pages", EVERYTHING)
    screens = source.calls("screens", EVERYTHING)
    groups = source.calls("groups", EVERYTHING)
    identifies = source.identifies()
    assert pages is not None and screens is not None and groups is not None
    assert (counts.pages, counts.screens, counts.groups) == (len(pages), len(screens), len(groups))
    message = {"id", "anonymous_id", "user_id", "received_at", "sent_at", "timestamp", "uuid_ts"}
    for frame in (pages, screens, groups):
        assert message <= set(frame.columns)
        assert any(c.startswith("context_") for c in frame.columns)
        assert frame["id"].duplicated().any()  # re-delivered messages
    assert {"name", "path", "url", "title", "referrer", "search", "category"} <= set(pages.columns)
    for frame in (pages, screens):
        assert frame["name"].isna().any() and (frame["name"] == "").any()
    assert (pages["name"] == "Pricing").any()
    assert screens["load_ms"].dtype == pd.ArrowDtype(pa.int64())

    # anonymous views before sign-up, by anonymous ids the identify calls link to a user
    linked = set(identifies.loc[identifies["user_id"].notna(), "anonymous_id"])
    anonymous = pages[pages["user_id"].isna() & pages["anonymous_id"].isin(linked)]
    signed_in = pages[pages["user_id"].notna()]
    assert len(anonymous) and anonymous["anonymous_id"].isin(signed_in["anonymous_id"]).any()
    known = set(identifies["anonymous_id"])
    assert set(pages["anonymous_id"]) <= known and set(screens["anonymous_id"]) <= known
    # the same (user id, anonymous id) pairs as the tracks of the same people
    tracks = source.tracks(EVERYTHING).dropna(subset=["user_id", "anonymous_id"])
    pairs = set(zip(tracks["user_id"], tracks["anonymous_id"], strict=True))
    anon_of = dict(pairs)
    seen = [
        (u, a)
        for u, a in zip(signed_in["user_id"], signed_in["anonymous_id"], strict=True)
        if u in anon_of
    ]
    assert len(seen) > len(signed_in) // 2 and all(pair in pairs for pair in seen)

    # groups: typed traits, a user in two groups, traits that change, calls without a group
    assert groups["employees"].dtype == pd.ArrowDtype(pa.int64())
    members = groups.dropna(subset=["user_id", "group_id"])
    assert (members.groupby("user_id")["group_id"].nunique() > 1).any()
    plans = members.dropna(subset=["plan"]).groupby(["user_id", "group_id"])["plan"].nunique()
    assert (plans > 1).any()
    assert groups["group_id"].isna().any() and (groups["group_id"] == "").any()
    assert {"name", "industry", "plan"} <= set(groups.columns)
