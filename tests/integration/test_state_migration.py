"""The state store creates and migrates its own tables, on DuckDB and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from connect_sync.warehouse.errors import WarehouseError
from connect_sync.warehouse.state import SCHEMA_VERSION, StateStore


@pytest.fixture
def store(warehouse) -> Iterator[StateStore]:
    url, schema = warehouse
    engine = sa.create_engine(url)
    yield StateStore(engine, f"{schema}_state", schema)
    engine.dispose()


def tables(store: StateStore) -> set[str]:
    query = sa.text("SELECT table_name FROM information_schema.tables WHERE table_schema = :s")
    with store.engine.connect() as conn:
        return set(conn.execute(query, {"s": store.schema}).scalars())


def downgrade_to_version_1(store: StateStore) -> None:
    """What a state schema written by the first release looks like."""
    version = store.table("schema_version")
    with store.engine.begin() as conn:
        store.table("anonymous_profiles").drop(conn)
        conn.execute(sa.delete(version))
        conn.execute(sa.insert(version).values(version=1))


def test_a_new_state_schema_is_created_at_the_current_version(store: StateStore) -> None:
    store.migrate()
    store.migrate()  # idempotent

    assert store.schema_version() == SCHEMA_VERSION
    assert {"schema_version", "runs", "cursors", "delivered", "user_fingerprints"} <= tables(store)
    assert "anonymous_profiles" in tables(store)


def test_a_version_1_state_schema_is_migrated_and_keeps_its_data(store: StateStore) -> None:
    store.migrate()
    downgrade_to_version_1(store)
    store.record_fingerprints([("u1", "f" * 32)], "run-1")
    store.record_delivered("alias", ["msg-1"], "run-1")
    assert "anonymous_profiles" not in tables(store)

    store.migrate()

    assert store.schema_version() == SCHEMA_VERSION
    assert "anonymous_profiles" in tables(store)
    assert store.fingerprints(["u1"]) == {"u1": "f" * 32}
    assert store.delivered_among("alias", ["msg-1", "msg-2"]) == {"msg-1"}
    version = store.table("schema_version")
    with store.engine.connect() as conn:
        applied = conn.execute(sa.select(version.c.version).order_by(version.c.version)).scalars()
        assert list(applied) == list(range(1, SCHEMA_VERSION + 1))


def test_a_state_schema_from_a_newer_job_is_refused(store: StateStore) -> None:
    store.migrate()
    with store.engine.begin() as conn:
        conn.execute(sa.insert(store.table("schema_version")).values(version=SCHEMA_VERSION + 1))

    with pytest.raises(WarehouseError, match="newer than this connect-sync"):
        store.migrate()


def test_profiles_are_known_until_folded(store: StateStore) -> None:
    store.migrate()
    store.record_fingerprints([("anon-a", "a" * 32), ("u1", "b" * 32)], "run-1")
    store.record_anonymous_profiles(["anon-b", "anon-b"], "run-1")

    assert store.profiles_among(["anon-a", "anon-b", "anon-c"]) == {"anon-a", "anon-b"}

    store.forget_users(["anon-a", "anon-b"])

    assert store.profiles_among(["anon-a", "anon-b", "u1"]) == {"u1"}
    assert store.fingerprints(["anon-a", "u1"]) == {"u1": "b" * 32}
