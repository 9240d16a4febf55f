"""The state store's set-based MERGE path (a registered Arrow table on DuckDB, COPY into a
temp table on PostgreSQL) against what the rows must say afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import STAGE_MIN, StateStore

#: Keys COPY's text format must escape, and ordinary ones.
AWKWARD = ["tab\there", "new\nline", "back\\slash", "cr\rx", "quote'\"", "ünï 🎉", "plain"]


@pytest.fixture(params=["duckdb", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "duckdb":
        engine = create_engine(f"duckdb:///{tmp_path / 's.duckdb'}", create_dirs=True)
        schema = "cs"
    else:
        engine = create_engine(request.getfixturevalue("postgres_url"))
        schema = f"{request.getfixturevalue('pg_schema')}_state"
    store = StateStore(engine, schema, "segment")
    store.migrate()
    yield store
    engine.dispose()


def rows(store: StateStore, table: str, *columns: str) -> set[tuple]:
    t = store.table(table)
    with store.engine.connect() as conn:
        return set(conn.execute(sa.select(*(t.c[c] for c in columns))).tuples())


def test_merging_delivered_keeps_the_first_record_of_each_message(store: StateStore) -> None:
    first = pd.DataFrame(
        {"kind": "event", "message_id": [*AWKWARD, "plain"], "run_id": "run-1"}, dtype=object
    )
    assert store.merge_delivered(first) == len(AWKWARD)  # the repeated one once
    again = pd.DataFrame(
        {"kind": ["event", "event", "alias"], "message_id": ["plain", "new", "plain"]},
        dtype=object,
    ).assign(run_id="run-2")
    assert store.merge_delivered(again) == 3

    assert rows(store, "delivered", "kind", "message_id", "run_id") == {
        *(("event", m, "run-1") for m in AWKWARD),
        ("event", "new", "run-2"),
        ("alias", "plain", "run-2"),
    }
    assert store.delivered_among("event", ["plain", "tab\there", "absent"]) == {
        "plain",
        "tab\there",
    }
    assert store.delivered_among("alias", AWKWARD) == {"plain"}


def test_merging_fingerprints_lets_the_last_row_of_each_user_win(store: StateStore) -> None:
    store.merge_fingerprints(
        pd.DataFrame(
            {"user_id": AWKWARD, "fingerprint": [f"f-{i}" for i in range(len(AWKWARD))]},
            dtype=object,
        ).assign(run_id="run-1")
    )
    written = store.merge_fingerprints(
        pd.DataFrame(
            {"user_id": ["plain", "new", "plain"], "fingerprint": ["x", "y", "z"]}, dtype=object
        ).assign(run_id="run-2")
    )
    assert written == 2
    expected = {u: f"f-{i}" for i, u in enumerate(AWKWARD)} | {"plain": "z", "new": "y"}
    assert rows(store, "user_fingerprints", "user_id", "fingerprint") == set(expected.items())
    assert store.fingerprints([*expected, "absent"]) == expected
    assert store.fingerprint_rows(["plain"])["plain"][0] == "z"


def test_lookups_of_many_keys_use_the_staged_join_and_agree(store: StateStore) -> None:
    many = [f"m-{n}" for n in range(STAGE_MIN + 10)]
    store.record_delivered("event", many[::2], "run-1")
    store.record_fingerprints([(k, f"f{k}") for k in many[::3]], "run-1")
    assert store.delivered_among("event", many) == set(many[::2])
    assert store.delivered_among("event", many[:10]) == set(many[:10:2])  # IN list path
    assert store.fingerprints(many) == {k: f"f{k}" for k in many[::3]}


def test_a_cursor_moves_forward_and_back_per_stream(store: StateStore) -> None:
    noon = datetime(2026, 11, 1, 12, tzinfo=UTC)
    store.move_cursor("tracks", noon, "run-1")
    store.move_cursor("identifies", noon.replace(hour=9), "run-1")
    store.move_cursor("tracks", noon.replace(hour=13), "run-2")
    assert store.cursors() == {"tracks": noon.replace(hour=13), "identifies": noon.replace(hour=9)}
