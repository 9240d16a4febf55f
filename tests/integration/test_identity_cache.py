"""The identity graph cached between runs: reused while no link is new, updated with the
links loaded since, resolved anew when the link tables changed under it."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from connect_sync.warehouse.journal import journal_directory

from tests.integration.test_identity_pipeline import (
    assert_one_person,
    settings_for,
    signup_rows,
    sync,
    visitor_rows,
)
from tests.segment_rows import row, write_tables


def cache_directory(warehouse, sandbox) -> Path:
    s = settings_for(warehouse, sandbox)
    return (
        journal_directory(s.effective_state_url, s.state_schema, s.books_key, s.journal_dir)
        / "identity"
    )


def test_graph_is_reused_then_updated_with_new_links_only(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(url, schema, visitor_rows())
    first = sync(warehouse, sandbox)
    assert first.identity_graph == "resolved"
    again = sync(warehouse, sandbox)
    assert (again.identity_graph, again.identity_links_read) == ("cached", 0)

    write_tables(url, schema, signup_rows())  # an alias and two identify/track links
    updated = sync(warehouse, sandbox)
    assert updated.identity_graph == "updated"
    assert updated.identity_links_read == 4  # the new rows' links, not the old ones again
    assert_one_person(sandbox)

    refreshed = sync(warehouse, sandbox, full_refresh=True)
    assert refreshed.identity_graph == "resolved"
    assert refreshed.merges_sent == 0  # the same graph: nothing to merge again
    assert_one_person(sandbox)


def test_a_deleted_link_row_makes_the_run_resolve_every_link(warehouse, sandbox) -> None:
    url, schema = warehouse
    write_tables(
        url,
        schema,
        {
            "identifies": [
                row(0, anonymous_id="shared-device", user_id="alice"),
                row(5, anonymous_id="shared-device", user_id="bob"),
            ]
        },
    )
    assert sync(warehouse, sandbox).identity_conflicts == 1
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # e.g. a deletion request carried out in the warehouse
        conn.execute(sa.text(f"DELETE FROM \"{schema}\".identifies WHERE user_id = 'bob'"))
    engine.dispose()

    report = sync(warehouse, sandbox)

    assert report.identity_graph == "resolved"
    assert report.identity_conflicts == 0


def test_an_unreadable_cache_is_resolved_around(warehouse, sandbox) -> None:
    url, schema = warehouse
    rows = visitor_rows()
    for table, more in signup_rows().items():
        rows[table] = rows.get(table, []) + more
    write_tables(url, schema, rows)
    sync(warehouse, sandbox)
    directory = cache_directory(warehouse, sandbox)
    (directory / "graph.arrow").write_bytes(b"not arrow")

    report = sync(warehouse, sandbox)

    assert report.identity_graph == "resolved"
    assert_one_person(sandbox)
    assert sync(warehouse, sandbox).identity_graph == "cached"  # rewritten by that run
