"""The Events page as a user sees it: headless Chromium after a demo-sized sync.

Screenshots go to test-artifacts/ (gitignored). Chromium is Debian's `chromium` package,
which .ci/run installs; locally the test skips without it, in CI it must run."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import httpx
import orjson
import pytest
import sqlalchemy as sa
from connect_sync.connect.client import ClientConfig, deliver
from connect_sync.flows.pipeline import SyncOptions, run_sync
from connect_sync.transforms.messages import drop_repeated
from connect_sync.transforms.pages import page_payloads
from connect_sync.transforms.traits import chronological
from connect_sync.warehouse.demo import build_demo_warehouse
from connect_sync.warehouse.segment import SegmentSource, Window

from connect_sync.settings import Settings

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    "--window-size=1280,1000",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI") == "true":
            pytest.fail("chromium is required in CI (.ci/run installs Debian's package)")
        pytest.skip("chromium not installed")
    return path


def browse(binary: str, profile: Path, url: str, screenshot: Path | None = None) -> str:
    """The page's DOM after Chromium rendered it (and a screenshot of it, if asked)."""
    base = [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        shot = subprocess.run(
            [*base, f"--screenshot={screenshot}", url], capture_output=True, text=True, timeout=90
        )
        assert shot.returncode == 0 and screenshot.stat().st_size > 0, shot.stderr[-2000:]
    dom = subprocess.run([*base, "--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    return dom.stdout


class EventsTable(HTMLParser):
    """Reads the rendered Events page: {event name: count shown}, and the users line."""

    def __init__(self) -> None:
        super().__init__()
        self.counts: dict[str, int] = {}
        self.users = ""
        self.search_value: str | None = None
        self._row: str | None = None
        self._cell: str | None = None
        self._in_users = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "tr" and a.get("data-event") is not None:
            self._row = a["data-event"]
        elif tag == "td" and self._row is not None and a.get("class") == "count":
            self._cell = ""
        elif tag == "span" and a.get("id") == "users":
            self._in_users = True
        elif tag == "input" and a.get("id") == "search":
            self.search_value = a.get("value") or ""

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell += data
        if self._in_users:
            self.users += data

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._cell is not None:
            assert self._row is not None
            self.counts[self._row] = int(self._cell.strip())
            self._cell, self._row = None, None
        elif tag == "span":
            self._in_users = False
        elif tag == "tr":
            self._row = None


def read_page(dom: str) -> EventsTable:
    page = EventsTable()
    page.feed(dom)
    return page


def test_events_page_in_chromium_after_a_demo_sync(sandbox, tmp_path: Path) -> None:
    binary = chromium()
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, users=2000, seed=7)  # the demo's default size
    settings = Settings(
        warehouse_url=f"duckdb:///{warehouse}",
        source_schema="segment",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
    )
    report = run_sync(settings, SyncOptions())
    assert report.status == "succeeded" and report.events_sent > 0

    names = httpx.get(f"{sandbox.url}/_sandbox/event_names", timeout=30).json()
    stats = sandbox.stats()
    busiest = max(names, key=lambda row: row["last_24h"])
    profile = tmp_path / "chromium-profile"

    everything = read_page(
        browse(binary, profile, f"{sandbox.url}/", ARTIFACTS / "events-page.png")
    )
    query = busiest["event"].lower()[: max(4, len(busiest["event"]) - 2)]
    found = read_page(
        browse(
            binary,
            profile,
            str(httpx.URL(f"{sandbox.url}/", params={"q": query})),
            ARTIFACTS / "events-page-search.png",
        )
    )

    # the whole page: every name the sandbox received, with its count
    assert everything.counts == {row["event"]: row["last_24h"] for row in names}
    assert everything.users.strip() == f"{stats['users']} users"
    tracks_sent = report.events_sent + report.pages_sent + report.screens_sent
    assert sum(everything.counts.values()) == stats["events"] == tracks_sent
    assert any(name.startswith("[Segment Page] ") for name in everything.counts)
    # the search: only matching names, and the count shown is the sandbox's own
    assert found.search_value == query
    assert busiest["event"] in found.counts
    assert all(query in name.lower() for name in found.counts)
    assert found.counts[busiest["event"]] == busiest["last_24h"] > 0
    assert found.counts[busiest["event"]] == len(sandbox.events(event=busiest["event"]))


def test_events_page_counts_pages_and_screens_under_their_event_names(
    sandbox, tmp_path: Path
) -> None:
    """Page and screen calls of the demo, as the page transform writes them, are listed by
    their event names (`[Segment Page] Pricing`) with their counts, and found by search."""
    binary = chromium()
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, users=300, seed=7)
    source = SegmentSource(sa.create_engine(f"duckdb:///{warehouse}"), "segment")
    config = ClientConfig(sandbox.api_url, sandbox.api_key, max_retries=0)
    sent: Counter[str] = Counter()
    for table in ("pages", "screens"):
        rows = source.calls(table, Window())
        assert rows is not None
        rows = drop_repeated(rows)
        rows = rows.take(chronological(rows))
        rows = rows.assign(canonical_id=rows["user_id"].fillna(rows["anonymous_id"]))
        built = page_payloads(rows, table)
        stats = deliver(config, "track", zip(built.message_ids, built.payloads, strict=True))
        assert stats.sent == len(built.payloads) > 0 and not stats.rejected
        sent.update(orjson.loads(p)["event"] for p in built.payloads)
    assert sent["[Segment Page] Pricing"] > 0 and sent["[Segment Page]"] > 0
    assert sent["[Segment Screen] Cart"] > 0

    profile = tmp_path / "chromium-profile"
    everything = read_page(
        browse(binary, profile, f"{sandbox.url}/", ARTIFACTS / "events-page-pages.png")
    )
    query = "[segment page]"
    found = read_page(
        browse(binary, profile, str(httpx.URL(f"{sandbox.url}/", params={"q": query})))
    )

    assert everything.counts == dict(sent)
    assert found.search_value == query
    assert found.counts == {
        name: n for name, n in sent.items() if name.startswith("[Segment Page]")
    }
    assert found.counts["[Segment Page] Pricing"] == len(
        sandbox.events(event="[Segment Page] Pricing")
    )


def test_user_and_event_pages_read_like_a_person_wrote_them(sandbox, tmp_path: Path) -> None:
    """Times are UTC dates, not epoch floats; an event name opens its arrivals (not a JSON
    array); the 24 h count is shown once; the user list starts with identified users."""
    import re

    binary = chromium()
    warehouse = tmp_path / "demo.duckdb"
    build_demo_warehouse(warehouse, users=100, seed=7)
    settings = Settings(
        warehouse_url=f"duckdb:///{warehouse}",
        source_schema="segment",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
    )
    assert run_sync(settings, SyncOptions()).status == "succeeded"
    profile = tmp_path / "chromium-profile"
    epoch = re.compile(r"\b1[0-9]{9}(\.[0-9]+)?\b")

    events_page = browse(binary, profile, f"{sandbox.url}/")
    assert "In last 24 h" not in events_page
    name = max(
        httpx.get(f"{sandbox.url}/_sandbox/event_names", timeout=30).json(),
        key=lambda row: row["last_24h"],
    )["event"]
    link = str(httpx.URL("/events", params={"event": name}))
    assert f'href="{link.replace("&", "&amp;")}"' in events_page

    arrivals = browse(
        binary, profile, f"{sandbox.url}{link}", ARTIFACTS / "event-arrivals-page.png"
    )
    assert 'id="event-arrivals"' in arrivals and "UTC" in arrivals
    assert not arrivals.lstrip().startswith("[")
    assert "/users?user_id=" in arrivals

    listing = browse(binary, profile, f"{sandbox.url}/users")
    first = re.search(r"<ul id=\"matches\"><li><a [^>]*>([^<]+)</a>", listing)
    assert first is not None and not first.group(1).startswith("anon-"), listing[:2000]
    user = first.group(1)
    raw = sandbox.user(user)
    assert raw is not None and isinstance(raw["updated_at"], float)  # epoch times stored ...
    user_page = browse(
        binary,
        profile,
        str(httpx.URL(f"{sandbox.url}/users", params={"user_id": user})),
        ARTIFACTS / "user-page.png",
    )
    assert 'id="profile"' in user_page
    assert not epoch.search(user_page), epoch.search(user_page)  # ... the page shows dates
