"""The sandbox's HTTP routes: Connect's /v2 API plus /_sandbox introspection and the Events page."""

from __future__ import annotations

import html
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from connect.sandbox.store import MemoryStore
from connect.sandbox.validation import (
    ValidationError,
    validate_batch,
    validate_identify,
    validate_track,
)


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error(status: int, message: str, code: str) -> Response:
    return _json({"error": {"Message": message, "Code": code}}, status)


def create_app(api_key: str, store: MemoryStore | None = None) -> Starlette:
    """The sandbox application; `store` holds everything it receives."""
    store = store if store is not None else MemoryStore()

    def api(validate: Callable[[Any], dict], write: Callable[[list[dict]], None], batch: bool):
        async def endpoint(request: Request) -> Response:
            store.count("requests")
            if request.headers.get("x-outbound-key") != api_key:
                return _error(401, "missing or invalid X-Outbound-Key", "unauthorized")
            raw = await request.body()
            try:
                body = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return _error(500, "malformed JSON", "malformed_json")
            try:
                items = validate_batch(body, validate) if batch else [validate(body)]
            except ValidationError as exc:
                store.count("rejected_items", len(body) if isinstance(body, list) else 1)
                return _error(400, exc.message, exc.code)
            write(items)
            return Response(status_code=200)

        return endpoint

    async def stats(request: Request) -> Response:
        return _json(store.stats())

    async def user(request: Request) -> Response:
        profile = store.user(request.path_params["user_id"])
        if profile is None:
            return _error(404, "no such user", "not_found")
        return _json(profile)

    async def events(request: Request) -> Response:
        params = request.query_params
        return _json(store.find_events(params.get("user_id") or None, params.get("event") or None))

    async def reset(request: Request) -> Response:
        with store.lock:
            store.reset()
        return _json({"ok": True})

    async def events_page(request: Request) -> HTMLResponse:
        return HTMLResponse(render_events_page(store, request.query_params.get("q", "")))

    routes = [
        Route("/v2/identify", api(validate_identify, store.identify, False), methods=["POST"]),
        Route("/v2/identify/batch", api(validate_identify, store.identify, True), methods=["POST"]),
        Route("/v2/track", api(validate_track, store.track, False), methods=["POST"]),
        Route("/v2/track/batch", api(validate_track, store.track, True), methods=["POST"]),
        Route("/_sandbox/stats", stats),
        Route("/_sandbox/users/{user_id:path}", user),
        Route("/_sandbox/events", events),
        Route("/_sandbox/reset", reset, methods=["POST"]),
        Route("/", events_page),
    ]
    app = Starlette(routes=routes)
    app.state.store = store
    return app


def render_events_page(store: MemoryStore, query: str = "") -> str:
    """Settings > Events: every event name, its count in the last 24 hours, last arrival."""
    now = time.time()
    needle = query.strip().lower()
    rows = [r for r in store.event_summary(now) if needle in r["event"].lower()]
    body = "".join(
        "<tr><td class='event'>{}</td><td class='count'>{}</td><td>{}</td></tr>".format(
            html.escape(r["event"]),
            r["last_24h"],
            time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(r["last_seen"])),
        )
        for r in rows
    )
    users = store.stats()["users"]
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Connect sandbox: Events</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 10px;text-align:left}}</style></head>
<body><h1>Events</h1>
<form method="get" action="/"><input type="search" name="q" id="search"
 value="{html.escape(query)}" placeholder="Search events">
<button type="submit">Search</button></form>
<p id="users">{users} users &middot; <a href="/users">look up a user</a></p>
<table id="events"><thead><tr><th>Event</th><th>Received (last 24 h)</th><th>Last seen</th>
</tr></thead><tbody>{body}</tbody></table></body></html>"""


def user_link(user_id: str) -> str:
    return f"/_sandbox/users/{quote(user_id, safe='')}"
