"""Server-rendered HTML: the Events page (Connect's Settings > Events) and a user lookup."""

from __future__ import annotations

import html
import time
from typing import Any
from urllib.parse import quote, urlencode

import orjson

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222;padding:0 1em}
h1{font-size:1.6em;margin-bottom:.2em} nav a{margin-right:1em}
table{border-collapse:collapse;width:100%;margin-top:1em}
td,th{border-bottom:1px solid #ddd;padding:6px 10px;text-align:left;vertical-align:top}
th{background:#f4f4f6} td.count,th.count{text-align:right;font-variant-numeric:tabular-nums}
input[type=search]{padding:6px;width:24em} button{padding:6px 12px}
.muted{color:#777} pre{background:#f7f7f9;padding:.6em;overflow:auto;margin:0}
.recent{color:#0a7d32;font-weight:600} .stale{color:#999} #fields th{width:14em}
"""


def _when(ts: float | None) -> str:
    if not ts:
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def _time(value: Any) -> str:
    """An epoch time as sent to Connect (seconds, int or float) as a readable UTC time."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(value))


def _is_time_key(key: str) -> bool:
    return key == "timestamp" or key.endswith(("_at", "_time", "_date"))


def _readable(value: Any, key: str = "") -> Any:
    """A profile for people: epoch times under time-like keys (`created_at`) as UTC times,
    nested objects alike; everything else as it is (the JSON link keeps the raw values)."""
    if isinstance(value, dict):
        return {k: _readable(v, str(k)) for k, v in value.items()}
    if _is_time_key(key) and isinstance(value, int | float) and not isinstance(value, bool):
        return _time(value)
    return value


def _ago(ts: float, now: float) -> str:
    seconds = max(0, int(now - ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size} {unit} ago"
    return f"{seconds} s ago"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        "<nav><a href='/'>Events</a><a href='/users'>Users</a>"
        "<a href='/_sandbox/stats'>Stats (JSON)</a></nav>"
        f"{body}</body></html>"
    )


def user_link(user_id: str) -> str:
    return "/users?" + urlencode({"user_id": user_id})


def event_link(event: str) -> str:
    return "/events?" + urlencode({"event": event})


def render_event_page(event: str, events: list[dict[str, Any]], limit: int) -> str:
    """The latest arrivals of one event name: who, when, what properties."""
    rows = "".join(
        f"<tr><td><a href='{html.escape(user_link(e['user_id']))}'>"
        f"{html.escape(e['user_id'])}</a></td><td class='when'>{_time(e['timestamp'])}</td>"
        f"<td><pre>{html.escape(orjson.dumps(e['properties']).decode())}</pre></td></tr>"
        for e in events
    )
    if not events:
        rows = "<tr><td colspan='3' class='muted' id='empty'>None received.</td></tr>"
    json_link = html.escape("/_sandbox/events?" + urlencode({"event": event}))
    body = (
        f"<h1 id='event-name'>{html.escape(event)}</h1>"
        f"<p class='muted'>The latest {len(events)} arrivals (at most {limit}), newest first. "
        f"<a href='{json_link}'>All as JSON</a></p><table id='event-arrivals'><thead><tr>"
        "<th>User</th><th>Timestamp</th><th>Properties</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    return _page(f"Connect sandbox: {event}", body)


def render_events_page(
    summary: list[dict[str, Any]], users: int, events: int, query: str, now: float
) -> str:
    """Every event name received, arrivals in the last 24 hours, last arrival; searchable."""
    needle = query.strip().lower()
    rows = [r for r in summary if needle in r["event"].lower()]
    lines = []
    for r in rows:
        name = html.escape(r["event"])
        arrivals = html.escape(event_link(r["event"]))
        lines.append(
            f"<tr data-event='{name}'>"
            f"<td class='event'><a href='{arrivals}'>{name}</a></td>"
            f"<td class='count'>{r['last_24h']}</td>"
            f"<td class='count total'>{r['total']}</td>"
            f"<td class='last-seen' title='{_when(r['last_seen'])}'>{_when(r['last_seen'])}"
            f" <span class='muted'>({_ago(r['last_seen'], now)})</span></td></tr>"
        )
    if not rows:
        message = "No event matches your search." if summary else "No events received yet."
        lines.append(f"<tr><td colspan='4' class='muted' id='empty'>{message}</td></tr>")
    shown = (
        f"{len(rows)} of {len(summary)} event names match"
        if needle
        else f"{len(summary)} event names"
    )
    body = f"""
<h1>Events</h1>
<p class="muted">Every event name this sandbox received. Counts are arrivals at the sandbox
in the last 24 hours (by arrival time, not the event's own timestamp).</p>
<form method="get" action="/" role="search">
<input type="search" name="q" id="search" value="{html.escape(query)}"
 placeholder="Search events" autofocus>
<button type="submit">Search</button></form>
<p id="summary"><span id="users">{users} user{"" if users == 1 else "s"}</span> &middot;
<a href="/users" id="user-lookup">look up a user</a> &middot;
<span id="events-total">{events} events stored</span> &middot;
<span id="names-shown">{shown}</span></p>
<table id="events"><thead><tr><th>Event</th><th class="count">Received (last 24 h)</th>
<th class="count">Received in all</th><th>Last received</th></tr></thead>
<tbody>{"".join(lines)}</tbody></table>
<p class="muted">Page rendered {_when(now)}.</p>"""
    return _page("Connect sandbox: Events", body)


def render_user_page(
    query: str,
    profile: dict[str, Any] | None,
    events: list[dict[str, Any]],
    matches: list[str],
) -> str:
    """Look a user up by id: the merged profile and its latest events."""
    form = f"""
<h1>Users</h1>
<form method="get" action="/users" role="search">
<input type="search" name="user_id" id="user-search" value="{html.escape(query)}"
 placeholder="User id" autofocus>
<button type="submit">Look up</button></form>"""
    parts = [form]
    if profile is not None:
        json_link = f"/_sandbox/users/{quote(profile['user_id'], safe='')}"
        fields = "".join(
            f"<tr><th>{html.escape(k)}</th><td><pre>"
            f"{html.escape(orjson.dumps(v, option=orjson.OPT_INDENT_2).decode())}</pre></td></tr>"
            for k, v in _readable(profile).items()
        )
        rows = "".join(
            f"<tr><td><a href='{html.escape(event_link(e['event']))}'>"
            f"{html.escape(e['event'])}</a></td><td class='when'>{_time(e['timestamp'])}</td>"
            f"<td><pre>{html.escape(orjson.dumps(e['properties']).decode())}</pre></td></tr>"
            for e in events
        )
        parts.append(
            f"<h2 id='profile'>{html.escape(profile['user_id'])}</h2>"
            f"<p><a href='{json_link}'>as JSON</a></p><table id='fields'>{fields}</table>"
            f"<h2>Latest events ({len(events)} shown)</h2><table id='user-events'>"
            "<thead><tr><th>Event</th><th>Timestamp</th><th>Properties</th></tr></thead>"
            f"<tbody>{rows}</tbody></table>"
        )
    else:
        if query:
            parts.append(f"<p id='not-found'>No user <b>{html.escape(query)}</b>.</p>")
        if matches:
            items = "".join(
                f"<li><a href='{html.escape(user_link(m))}'>{html.escape(m)}</a></li>"
                for m in matches
            )
            label = "User ids starting with that" if query else "Some user ids"
            parts.append(f"<p>{label}:</p><ul id='matches'>{items}</ul>")
    return _page("Connect sandbox: Users", "".join(parts))
