"""#17.6 / #19: every column type of the supported warehouses maps to JSON, read through
the project's own readers (`warehouse.frames`, real DuckDB and PostgreSQL): exact decimals
as JSON numbers written from the decimal, money as its amount, bytes as base64, intervals
as ISO-8601 durations, UUID/JSON/inet as text, infinite timestamps left out and counted,
and a column with no JSON form left out and reported, never a crash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import sqlalchemy as sa
from connect_sync.transforms.events import property_texts
from connect_sync.transforms.identity_columns import CANONICAL
from connect_sync.transforms.json_objects import json_records
from connect_sync.transforms.traits import device_tokens, latest_traits
from connect_sync.transforms.users import identify_payloads
from connect_sync.transforms.values import Field, json_column, json_ready
from connect_sync.warehouse.frames import read_frame

from tests.segment_rows import row, write_tables

DUCKDB_COLUMNS = {
    "dec38": "12.34::DECIMAL(38,10)",
    "dec2": "858.18::DECIMAL(38,2)",
    "dec_whole": "123456789012345678901234567890::DECIMAL(38,0)",
    "dec_small": "0.0000001::DECIMAL(20,10)",
    "dec_neg": "-5.00::DECIMAL(10,2)",
    "huge": "170141183460469231731687303715884105727::HUGEINT",
    "ubig": "18446744073709551615::UBIGINT",
    "span": "INTERVAL '1 day 2 hours'",
    "blob": "'abc\\x00\\xFF'::BLOB",
    "uid": "'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::UUID",
    "doc": """'{"a":1}'::JSON""",
    "day": "DATE '2024-05-01'",
    "clock": "TIME '12:34:56.5'",
    "ns": "TIMESTAMP_NS '2024-01-01 00:00:00.123456789'",
    "y9999": "TIMESTAMPTZ '9999-12-31 23:59:59+00'",
    "forever": "'infinity'::TIMESTAMPTZ",
    "never": "'-infinity'::TIMESTAMP",
    "stamps": "[TIMESTAMP '2024-05-01 01:02:03']",
    "obj": "{'p': 1.50::DECIMAL(10,2), 'b': '\\xAA'::BLOB}",
    "tags": "['a', '']",
    "kv": "MAP {'k': 1}",
    "either": "union_value(num := 2)::UNION(num INT, str VARCHAR)",
}

DUCKDB_EXPECTED = {
    "dec38": Decimal("12.34"),
    "dec2": Decimal("858.18"),
    "dec_whole": 123456789012345678901234567890,
    "dec_small": Decimal("0.0000001"),
    "dec_neg": Decimal("-5.0"),
    "huge": 170141183460469231731687303715884105727,
    "ubig": 18446744073709551615,
    "span": "P1DT2H",
    "blob": "YWJjAP8=",
    "uid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
    "doc": '{"a":1}',
    "day": "2024-05-01",
    "clock": "12:34:56.5",
    "ns": "2024-01-01T00:00:00Z",
    "y9999": "9999-12-31T23:59:59Z",
    "stamps": ["2024-05-01T01:02:03Z"],
    "obj": {"b": "qg==", "p": Decimal("1.5")},
    "tags": ["a", ""],
    "kv": {"k": 1},
}

#: Numbers as the payload bytes carry them: the decimal's digits, never a float's.
EXACT = ('"dec2":858.18,', '"dec38":12.34,', '"dec_small":0.0000001,', '"dec_neg":-5.0,')


def members(text: str) -> dict:
    """A JSON object with its numbers parsed exactly (Decimal, int)."""
    return json.loads(text, parse_float=Decimal)


def duckdb_frame(tmp_path: Path, native: bool = True) -> pd.DataFrame:
    engine = sa.create_engine(f"duckdb:///{tmp_path / 'types.duckdb'}")
    select = ", ".join(f"{sql} AS {name}" for name, sql in DUCKDB_COLUMNS.items())
    with engine.connect() as conn:
        conn.exec_driver_sql(f"CREATE OR REPLACE TABLE t AS SELECT 'm1' AS id, {select}")
        frame = read_frame(conn, sa.text("SELECT * FROM t"), {}, native=native)
    engine.dispose()
    return frame


def test_every_duckdb_type_maps_to_json(tmp_path):
    quality: Counter[str] = Counter()
    text = property_texts(duckdb_frame(tmp_path), quality).to_pylist()[0]
    assert members(text) == DUCKDB_EXPECTED
    assert all(exact in text for exact in EXACT)
    # forever/never: infinite; either: a UNION has no JSON form (left out, reported)
    assert quality == Counter({"invalid_timestamp": 2, "unmappable_type": 1})


def test_duckdb_types_through_sqlalchemy_rows(tmp_path):
    """The DB-API path (no native Arrow) reads UBIGINT max and decimals without a crash."""
    text = property_texts(duckdb_frame(tmp_path, native=False)).to_pylist()[0]
    got = members(text)
    for key in ("dec38", "dec2", "dec_whole", "dec_small", "dec_neg", "ubig", "blob", "uid"):
        assert got[key] == DUCKDB_EXPECTED[key], key
    assert got["span"] == "PT26H"  # a timedelta: no day/hour split left to keep


def test_every_duckdb_type_in_identify_attributes(tmp_path):
    frame = duckdb_frame(tmp_path)
    frame[CANONICAL] = "u1"
    built = identify_payloads(latest_traits(frame), device_tokens(frame))
    text = built.payloads[0].decode()
    assert members(text)["attributes"] == DUCKDB_EXPECTED
    assert all(exact in text for exact in EXACT)
    assert built.quality == Counter({"invalid_timestamp": 2, "unmappable_type": 1})


PG_COLUMNS = {
    "dec38": "12.34::numeric(38,10)",
    "dec2": "858.18::numeric(38,2)",
    "dec_whole": "123456789012345678901234567890::numeric",
    "cash": "12.34::money",
    "span": "interval '1 day 2 hours'",
    "blob": "'\\x00ff61'::bytea",
    "uid": "'6ba7b810-9dad-11d1-80b4-00c04fd430c8'::uuid",
    "doc": """'{"a":1}'::jsonb""",
    "ip": "'10.0.0.1'::inet",
    "net": "'10.0.0.0/8'::cidr",
    "day": "date '2024-05-01'",
    "clock": "time '12:34:56'",
    "y9999": "'9999-12-31 23:59:59+00'::timestamptz",
    "tags": "ARRAY['a','b']",
}


def pg_frame(url: str, schema: str, columns: dict[str, str], native: bool) -> pd.DataFrame:
    engine = sa.create_engine(url)
    select = ", ".join(f"{sql} AS {name}" for name, sql in columns.items())
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.exec_driver_sql(f'CREATE TABLE IF NOT EXISTS "{schema}".t AS SELECT {select}')
    with engine.connect() as conn:
        frame = read_frame(conn, sa.text(f'SELECT * FROM "{schema}".t'), {}, native=native)
    engine.dispose()
    return frame


@pytest.mark.parametrize("native", [True, False], ids=["adbc", "psycopg"])
def test_every_postgres_type_maps_to_json(postgres_url, pg_schema, native):
    frame = pg_frame(postgres_url, pg_schema, PG_COLUMNS, native)
    got = members(property_texts(frame).to_pylist()[0])
    expected = {
        "dec38": Decimal("12.34"),
        "dec2": Decimal("858.18"),
        "dec_whole": 123456789012345678901234567890,
        "cash": Decimal("12.34"),  # the amount, not 1234 cents
        "span": "P1DT2H" if native else "PT26H",
        "blob": "AP9h",
        "uid": "6ba7b810-9dad-11d1-80b4-00c04fd430c8",
        "doc": '{"a": 1}' if native else {"a": 1},
        "ip": "10.0.0.1",
        "net": "10.0.0.0/8",
        "day": "2024-05-01",
        "clock": "12:34:56",
        "y9999": "9999-12-31T23:59:59Z",
        "tags": ["a", "b"],
    }
    assert got == expected


def test_postgres_values_no_payload_can_carry_are_left_out_and_counted(postgres_url, pg_schema):
    """Through ADBC: `infinity` times and dates, NUMERIC NaN, and types with no JSON form
    (point, bit) are left out and counted; the rest of the row is sent."""
    columns = {
        "plan": "'pro'::text",
        "forever": "'infinity'::timestamptz",
        "never": "'-infinity'::timestamp",
        "someday": "'infinity'::date",
        "nan": "'NaN'::numeric",
        "pt": "point(1,2)",
        "bits": "B'101'::bit(3)",
    }
    quality: Counter[str] = Counter()
    frame = pg_frame(postgres_url, pg_schema, columns, native=True)
    assert property_texts(frame, quality).to_pylist() == ['{"plan":"pro"}']
    assert quality == Counter(
        {"invalid_timestamp": 2, "invalid_date": 1, "invalid_number": 1, "unmappable_type": 2}
    )


def test_decimal_is_written_from_its_digits_not_a_float():
    """#19: NUMBER(38,2) 858.18 summed in floats gives 858.1800000000001; never here."""
    values = [Decimal("858.18"), Decimal("0.10"), Decimal("-0.0000001"), Decimal("5.00"), None]
    array = pa.array(values, pa.decimal128(38, 7))
    out = json_records([Field("x", json_ready(array))], len(values))
    assert out == [b'{"x":858.18}', b'{"x":0.1}', b'{"x":-0.0000001}', b'{"x":5.0}', b"{}"]


def test_unmappable_column_is_reported_not_raised():
    union = pa.UnionArray.from_sparse(
        pa.array([0, 1], pa.int8()), [pa.array([1, 2]), pa.array(["a", "b"])]
    )
    ready, quality = json_column("either", union)
    assert ready is None and quality == Counter({"unmappable_type": 2})


def run_cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECT_", "PREFECT_API"))}
    return subprocess.run(
        [sys.executable, "-m", "connect_sync", *args],
        cwd=cwd,
        env={**full, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_dry_run_with_odd_columns_sends_the_rest_and_never_crashes(tmp_path):
    """The run that used to crash on every rerun: odd trait and property types."""
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    write_tables(
        url,
        "segment",
        {
            "identifies": [row(0, id="i1", user_id="u1", plan="pro")],
            "tracks": [row(1, id="e1", user_id="u1", event="signed_up", event_text="Signed Up")],
            "signed_up": [row(1, id="e1", user_id="u1", source="ads")],
        },
    )
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        for table in ("identifies", "signed_up"):
            for name, sql in (
                ("span", "INTERVAL '1 day'"),
                ("ubig", "18446744073709551615::UBIGINT"),
                ("price", "858.18::DECIMAL(38,2)"),
                ("forever", "'infinity'::TIMESTAMPTZ"),
                ("either", "union_value(num := 2)::UNION(num INT, str VARCHAR)"),
            ):
                kind = conn.exec_driver_sql(f"SELECT typeof({sql})").scalar()
                conn.exec_driver_sql(
                    f"ALTER TABLE segment.{table} ADD COLUMN {name} {kind} DEFAULT {sql}"
                )
    engine.dispose()
    out = tmp_path / "dry.jsonl"
    env = {
        "CONNECT_SYNC_WAREHOUSE_URL": url,
        "CONNECT_SYNC_STATE_URL": f"duckdb:///{tmp_path / 's.duckdb'}",
    }
    for _ in range(2):  # and the rerun
        result = run_cli("sync", "--dry-run", "--output", str(out), cwd=tmp_path, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Traceback" not in result.stdout + result.stderr
        report = " ".join(result.stdout.split())  # the report's quality counters
        # one of each in the identify's traits, one in the event's properties
        assert "invalid_timestamp 2" in report and "unmappable_type 2" in report
    bodies = {}
    for line in out.read_text().splitlines():
        call = json.loads(line)
        bodies[call["endpoint"]] = call["body"]
    odd = {"span": "P1D", "ubig": 18446744073709551615, "price": 858.18}
    assert bodies["/v2/identify"]["attributes"] == {"plan": "pro", **odd}
    assert bodies["/v2/track"]["properties"] == {"source": "ads", **odd}
    assert '"price":858.18' in out.read_text()
