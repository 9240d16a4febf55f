"""The whole pipeline on the demo warehouse into the sandbox, checked against SQL counts."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.warehouse.demo import build_demo_warehouse

from connect_sync.settings import Settings

EXPECTED_EVENTS = """
SELECT count(DISTINCT id) FROM segment.tracks
WHERE coalesce(user_id, anonymous_id) IS NOT NULL
  AND length(coalesce(event_text, event)) <= 200
"""

#: Page and screen calls: one track each (their demo names are short).
EXPECTED_PAGE_VIEWS = """
SELECT (SELECT count(DISTINCT id) FROM segment.pages
        WHERE coalesce(user_id, anonymous_id) IS NOT NULL)
     + (SELECT count(DISTINCT id) FROM segment.screens
        WHERE coalesce(user_id, anonymous_id) IS NOT NULL)
"""

EXPECTED_USERS = """
WITH links AS (
    SELECT previous_id AS from_id, user_id AS to_id FROM segment.aliases
    UNION SELECT anonymous_id, user_id FROM segment.identifies
          WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
    UNION SELECT anonymous_id, user_id FROM segment.tracks
          WHERE anonymous_id IS NOT NULL AND user_id IS NOT NULL
),
canonical AS (SELECT from_id, max(to_id) AS to_id FROM links GROUP BY from_id),
-- a profile is made by an identify, or by a group call (an identify with group_id)
profiles AS (
    SELECT coalesce(user_id, anonymous_id) AS id FROM segment.identifies
    UNION SELECT coalesce(user_id, anonymous_id) FROM segment.groups
          WHERE trim(coalesce(group_id, '')) <> ''
)
SELECT count(DISTINCT coalesce(c.to_id, p.id))
FROM profiles p
LEFT JOIN canonical c ON c.from_id = p.id
WHERE p.id IS NOT NULL
"""


def _settings(path: Path, sandbox) -> Settings:
    return Settings(
        warehouse_url=f"duckdb:///{path}",
        source_schema="segment",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
    )


def test_demo_sync_delivers_every_expected_user_and_event(tmp_path: Path, sandbox) -> None:
    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, users=400, seed=11)
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.connect() as conn:
        expected_events = conn.execute(sa.text(EXPECTED_EVENTS)).scalar_one()
        expected_page_views = conn.execute(sa.text(EXPECTED_PAGE_VIEWS)).scalar_one()
        expected_users = conn.execute(sa.text(EXPECTED_USERS)).scalar_one()
    engine.dispose()

    report = run_sync(_settings(path, sandbox), SyncOptions())

    stats = sandbox.stats()
    assert report.status == "succeeded"
    assert expected_events == report.events_sent
    assert expected_page_views == report.pages_sent + report.screens_sent
    assert stats["events"] == expected_events + expected_page_views
    assert stats["users"] == expected_users
    assert stats["duplicate_events"] == 0
    assert stats["rejected_items"] == 0


def test_second_run_on_unchanged_data_sends_nothing(tmp_path: Path, sandbox) -> None:
    path = tmp_path / "demo.duckdb"
    build_demo_warehouse(path, users=150, seed=3)
    settings = _settings(path, sandbox)
    first = run_sync(settings, SyncOptions())
    requests_after_first = sandbox.stats()["requests"]

    second = run_sync(settings, SyncOptions())

    assert first.events_sent > 0 and first.users_sent > 0
    assert second.status == "succeeded"
    assert second.events_sent == second.users_sent == second.merges_sent == 0
    assert sandbox.stats()["requests"] == requests_after_first
