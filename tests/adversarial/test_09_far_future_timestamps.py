"""#17.9: year 9999 and pre-1970 timestamps keep their true order (the latest trait wins),
and a time no payload can carry (`infinity`) is left out and counted, never sent wrong."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

import orjson
import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.transforms.events import track_payloads
from connect_sync.transforms.identity_columns import CANONICAL
from connect_sync.transforms.traits import chronological, latest_traits
from connect_sync.transforms.users import identify_payloads
from connect_sync.transforms.values import iso_utc, json_column
from connect_sync.warehouse.frames import read_frame

US = pa.timestamp("us", tz="UTC")
Y9999 = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)
Y2024 = datetime(2024, 5, 1, tzinfo=UTC)
Y1969 = datetime(1969, 7, 20, tzinfo=UTC)
Y0001 = datetime(1, 1, 1, tzinfo=UTC)


def identifies(stamps: list[datetime | None], plans: list[str], unit: str = "us") -> pd.DataFrame:
    n = len(stamps)
    table = pa.table(
        {
            "id": pa.array([f"m{i}" for i in range(n)]),
            CANONICAL: pa.array(["u"] * n),
            "timestamp": pa.array(stamps, pa.timestamp(unit, tz="UTC")),
            "plan": pa.array(plans),
        }
    )
    return table.to_pandas(types_mapper=pd.ArrowDtype)


@pytest.mark.parametrize(
    "stamps",
    [
        [Y9999, Y2024],
        [Y2024, Y9999],
        [Y9999, Y1969],
        [Y1969, Y9999],
        [Y9999, Y0001],
    ],
)
def test_year_9999_is_the_latest_trait(stamps):
    plans = ["new" if s == Y9999 else "old" for s in stamps]
    assert latest_traits(identifies(stamps, plans)).loc["u", "plan"] == "new"


def test_pre_1970_sorts_before_1970_and_after_year_1():
    stamps = [Y2024, Y1969, Y0001, Y9999, None]
    order = chronological(identifies(stamps, ["a", "b", "c", "d", "e"]))
    assert order.tolist() == [4, 2, 1, 0, 3]  # missing first, then true time order


def test_received_at_tie_break_in_year_9999():
    frame = identifies([Y2024, Y2024], ["by-received-9999", "by-received-2024"])
    frame["received_at"] = pd.Series(pa.array([Y9999, Y2024], US), dtype=pd.ArrowDtype(US))
    assert latest_traits(frame).loc["u", "plan"] == "by-received-9999"


def test_far_future_order_through_duckdb(tmp_path):
    """The warehouse reader's own types: DuckDB TIMESTAMPTZ read by `frames`."""
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}")
    with engine.connect() as conn:
        conn.exec_driver_sql(
            "CREATE TABLE t AS SELECT * FROM (VALUES "
            "('1', 'u', TIMESTAMPTZ '9999-12-31 23:59:59+00', 'new'),"
            "('2', 'u', TIMESTAMPTZ '2024-05-01 00:00:00+00', 'old'),"
            "('3', 'u', TIMESTAMPTZ '1969-07-20 00:00:00+00', 'older')"
            f') AS v(id, "{CANONICAL}", "timestamp", plan)'
        )
        frame = read_frame(conn, sa.text("SELECT * FROM t"), {})
    engine.dispose()
    assert latest_traits(frame).loc["u", "plan"] == "new"


def test_infinite_timestamps_are_left_out_and_counted():
    infinite = pa.array([2**63 - 1, -(2**63) + 1, None], pa.int64()).view(US)
    stamps = pa.concat_arrays([pa.array([Y9999], US), infinite])
    ready, quality = json_column("seen", stamps)
    assert ready.to_pylist() == ["9999-12-31T23:59:59Z", None, None, None]
    assert quality == Counter({"invalid_timestamp": 2})
    assert iso_utc(infinite).to_pylist() == [None, None, None]  # never `-28134-...`


def test_infinite_trait_is_left_out_of_the_identify_and_counted():
    frame = identifies([Y2024], ["pro"])
    infinite = pa.array([2**63 - 1], pa.int64()).view(US)
    frame["last_seen"] = pd.Series(infinite, dtype=pd.ArrowDtype(US))
    built = identify_payloads(latest_traits(frame), pd.DataFrame())
    assert orjson.loads(built.payloads[0]) == {"user_id": "u", "attributes": {"plan": "pro"}}
    assert built.quality["invalid_timestamp"] == 1


def test_infinite_event_time_is_left_out_and_counted():
    tracks = pa.table(
        {
            "id": ["e1", "e2"],
            CANONICAL: ["u", "u"],
            "event": ["signed_up", "signed_up"],
            "timestamp": pa.concat_arrays(
                [pa.array([Y2024], US), pa.array([2**63 - 1], pa.int64()).view(US)]
            ),
        }
    ).to_pandas(types_mapper=pd.ArrowDtype)
    built = track_payloads(tracks)
    assert [orjson.loads(p) for p in built.payloads] == [
        {"user_id": "u", "event": "signed_up", "timestamp": 1714521600},
        {"user_id": "u", "event": "signed_up"},
    ]
    assert built.left_out == Counter({"invalid_timestamp": 1})
    assert built.rejected.empty


@pytest.mark.parametrize("backend", ["duckdb", "postgres"])
def test_infinity_read_by_the_rows_path_is_an_infinite_time(
    backend: str, tmp_path, request
) -> None:
    """The SQLAlchemy rows path (Redshift, Snowflake, BigQuery, PostgreSQL without ADBC)
    reads `infinity` as the native readers do: not as 9999-12-31 (DuckDB's driver hands over
    datetime.max), never a DataError (psycopg has no datetime for it)."""
    from connect_sync.transforms.values import beyond_iso
    from connect_sync.warehouse.engine import create_engine

    if backend == "duckdb":
        engine = create_engine(f"duckdb:///{tmp_path / 'w.duckdb'}", create_dirs=True)
        values = "SELECT * FROM (VALUES (1, TIMESTAMPTZ 'infinity', TIMESTAMP '-infinity'),"
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
        values = "SELECT * FROM (VALUES (1, 'infinity'::timestamptz, '-infinity'::timestamp),"
    query = sa.text(
        values + " (2, TIMESTAMPTZ '2024-05-01 00:00:00+00', TIMESTAMP '1969-07-20 00:00:00'))"
        " AS v(id, seen, born) ORDER BY id"
    )
    try:
        with engine.connect() as conn:
            plain = read_frame(conn, query, {}, native=False)
            native = read_frame(conn, query, {})
    finally:
        engine.dispose()
    for frame in (plain, native):
        for column in ("seen", "born"):
            array = pa.array(frame[column].array)
            assert beyond_iso(array).tolist() == [True, False], (column, array)
    assert plain["seen"].iloc[1] == native["seen"].iloc[1] == pd.Timestamp(Y2024)
