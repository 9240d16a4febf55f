"""The sandbox's HTTP routes: Connect's /v2 API plus /_sandbox introspection and the pages.

The /v2 routes are served by a lean ASGI handler (no router, no Request objects: the batch
path must take tens of thousands of items per second); everything else is a Starlette app.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import orjson
from connect_sync.connect.sandbox import pages
from connect_sync.connect.sandbox.faults import FaultInjector, Faults
from connect_sync.connect.sandbox.store import (
    MemoryStore,
    SandboxStore,
    disable_token,
    register_token,
)
from connect_sync.connect.sandbox.validation import (
    PLATFORMS,
    ValidationError,
    validate_batch,
    validate_campaigns,
    validate_disable,
    validate_identify,
    validate_token,
    validate_track,
    validate_user,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
#: An API operation: validates the parsed body, stores it (counting the request), and
#: returns how many items it carried; raises ValidationError for a 400.
Operation = Callable[[Any], int]

EMPTY_200 = (
    {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"0")]},
    {"type": "http.response.body", "body": b""},
)
PAGE_EVENTS_LIMIT = 200
#: API request arrivals kept for GET /_sandbox/arrivals (the oldest are forgotten).
ARRIVALS_KEPT = 100_000
#: The body of a preflight probe: an empty batch (answered 400, counted nowhere).
PROBE_BODY = b"[]"


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def _error_body(message: str, code: str) -> bytes:
    return orjson.dumps({"error": {"Message": message, "Code": code}})


def _error(status: int, message: str, code: str) -> Response:
    return Response(_error_body(message, code), status_code=status, media_type="application/json")


def _item_count(body: Any) -> int:
    return len(body) if isinstance(body, list) else 1


class SandboxApp:
    """ASGI application: the Connect API with faults, and the introspection routes."""

    def __init__(
        self, api_key: str, store: SandboxStore | None = None, faults: Faults | None = None
    ) -> None:
        self.api_key = api_key.encode()
        self.store = store if store is not None else MemoryStore()
        self.injector = FaultInjector(faults)
        #: (wall time, path) of every API request as it arrived, before any fault
        self.arrivals: deque[tuple[float, str]] = deque(maxlen=ARRIVALS_KEPT)
        self.operations = self._operations()
        self.site = self._site()
        self.state = self.site.state  # like Starlette: app.state.store
        self.state.store = self.store
        self.state.injector = self.injector

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            operation = self.operations.get(scope["path"])
            if operation is not None:
                await self.api(operation, scope, receive, send)
                return
        await self.site(scope, receive, send)

    # -- the Connect API ------------------------------------------------------------------

    def _operations(self) -> dict[str, Operation]:
        store = self.store

        def identify(body: Any) -> int:
            item = validate_identify(body)
            store.identify([item], requests=1)
            return 1

        def identify_batch(body: Any) -> int:
            items = validate_batch(body, validate_identify)
            store.identify(items, requests=1)
            return len(items)

        def track(body: Any) -> int:
            item = validate_track(body)
            store.track([item], requests=1)
            return 1

        def track_batch(body: Any) -> int:
            items = validate_batch(body, validate_track)
            store.track(items, requests=1)
            return len(items)

        def register(platform: str, body: Any) -> int:
            item = validate_token(body)
            store.update_profile(
                item["user_id"], partial(_register, platform, item["token"]), requests=1
            )
            return 1

        def disable(platform: str, body: Any) -> int:
            item = validate_disable(body)
            token = None if item.get("all") else item["token"]
            store.update_profile(item["user_id"], partial(_disable, platform, token), requests=1)
            return 1

        def subscription(unsubscribe: bool, everything: bool, body: Any) -> int:
            item = validate_user(body) if everything else validate_campaigns(body)
            change = partial(_subscription, unsubscribe, item.get("campaign_ids"))
            store.update_profile(item["user_id"], change, requests=1)
            return 1

        operations: dict[str, Operation] = {
            "/v2/identify": identify,
            "/v2/identify/batch": identify_batch,
            "/v2/track": track,
            "/v2/track/batch": track_batch,
        }
        for platform in PLATFORMS:
            operations[f"/v2/{platform}/register"] = partial(register, platform)
            operations[f"/v2/{platform}/disable"] = partial(disable, platform)
        for verb in ("subscribe", "unsubscribe"):
            operations[f"/v2/{verb}/all"] = partial(subscription, verb == "unsubscribe", True)
            operations[f"/v2/{verb}/campaigns"] = partial(
                subscription, verb == "unsubscribe", False
            )
        return operations

    async def api(self, operation: Operation, scope: Scope, receive: Receive, send: Send) -> None:
        """One Connect API request: faults, key, JSON, validation, then one write.

        An empty batch (`[]`, what the client's preflight check sends) meets only the latency
        fault and the key check, and is counted nowhere: probing changes nothing."""
        self.arrivals.append((time.time(), scope["path"]))
        if scope["method"] != "POST":
            await _send(send, 405, _error_body("use POST", "method_not_allowed"), allow=True)
            return
        faults = self.injector.faults
        if faults.latency_ms:
            await asyncio.sleep(faults.latency_ms / 1000)
        raw = await _read_body(receive)
        if raw == PROBE_BODY and scope["path"].endswith("/batch"):
            await self._probe(scope, send)
            return
        if faults.active:
            decision = self.injector.decide(len(raw))
            if decision is not None:
                await self._fault(decision, send)
                return
        if not _has_key(scope, self.api_key):
            self.store.count("requests", unauthorized=1)
            body = _error_body("missing or invalid X-Outbound-Key", "unauthorized")
            await _send(send, 401, body)
            return
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            self.store.count("requests")
            await _send(send, 500, _error_body("malformed JSON", "malformed_json"))
            return
        try:
            operation(body)
        except ValidationError as exc:
            self.store.count("requests", rejected_items=_item_count(body))
            await _send(send, 400, _error_body(exc.message, exc.code))
            return
        if faults.slow_answer_ms:  # stored already: a client that gives up re-sends it
            await asyncio.sleep(faults.slow_answer_ms / 1000)
        if faults.drop_after_rate and self.injector.drop_after():
            # stored, but the client never hears so: the duplicate-maker of a flaky network
            self.store.count("connections_dropped")
            await _drop_connection(send)
            return
        await send(EMPTY_200[0])
        await send(EMPTY_200[1])

    async def _probe(self, scope: Scope, send: Send) -> None:
        """The preflight probe: 401 for a wrong key, else Connect's 400 for an empty batch."""
        if not _has_key(scope, self.api_key):
            body = _error_body("missing or invalid X-Outbound-Key", "unauthorized")
            await _send(send, 401, body)
            return
        body = _error_body("a batch must hold at least one item", "empty_batch")
        await _send(send, 400, body)

    async def _fault(self, decision: tuple[str, Any], send: Send) -> None:
        kind, value = decision
        if kind == "drop":
            self.store.count("requests", connections_dropped=1)
            await _drop_connection(send)
        elif kind == "rate_limited":
            self.store.count("requests", rate_limited=1)
            body = _error_body("too many requests", "rate_limited")
            await _send(send, 429, body, headers=[(b"retry-after", str(value).encode())])
        elif kind == "too_large":
            self.store.count("requests")
            body = _error_body(f"request body larger than {value} bytes", "too_large")
            await _send(send, 413, body)
        else:
            self.store.count("requests", errors_injected=1)
            await _send(send, value, _error_body("injected server error", "server_error"))

    # -- introspection and pages -----------------------------------------------------------

    def _site(self) -> Starlette:
        store, injector = self.store, self.injector

        async def stats(request: Request) -> Response:
            return _json(store.stats())

        async def user(request: Request) -> Response:
            profile = store.user(request.path_params["user_id"])
            if profile is None:
                return _error(404, "no such user", "not_found")
            return _json(profile)

        async def events(request: Request) -> Response:
            params = request.query_params
            limit = params.get("limit")
            rows = store.find_events(
                params.get("user_id") or None,
                params.get("event") or None,
                int(limit) if limit and limit.isdigit() else None,
            )
            for row in rows:
                del row["received_at"]
            return _json(rows)

        async def event_names(request: Request) -> Response:
            return _json(store.event_summary())

        async def faults(request: Request) -> Response:
            if request.method == "POST":
                try:
                    injector.set(Faults.from_dict(orjson.loads(await request.body() or b"{}")))
                except orjson.JSONDecodeError:
                    return _error(400, "faults must be JSON", "invalid_faults")
                except ValidationError as exc:
                    return _error(400, exc.message, exc.code)
                log.info("faults set: %s", injector.faults)
            return _json(injector.faults.as_dict())

        async def clock(request: Request) -> Response:
            if request.method == "POST":
                try:
                    advance = orjson.loads(await request.body() or b"{}").get("advance_s", 0)
                    store.clock_offset += float(advance)
                except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
                    return _error(400, 'send {"advance_s": seconds}', "invalid_clock")
            return _json({"now": store.now(), "offset_s": store.clock_offset})

        async def arrivals(request: Request) -> Response:
            return _json([{"at": at, "path": path} for at, path in list(self.arrivals)])

        async def reset(request: Request) -> Response:
            self.arrivals.clear()
            store.reset()
            injector.set(Faults())
            return _json({"ok": True})

        async def events_page(request: Request) -> HTMLResponse:
            stats = store.stats()
            return HTMLResponse(
                pages.render_events_page(
                    store.event_summary(),
                    stats["users"],
                    stats["events"],
                    request.query_params.get("q", ""),
                    store.now(),
                )
            )

        async def users_page(request: Request) -> HTMLResponse:
            query = request.query_params.get("user_id", "").strip()
            profile = store.user(query) if query else None
            events = (
                store.find_events(query, limit=PAGE_EVENTS_LIMIT, newest_first=True)
                if profile
                else []
            )
            matches = [] if profile else store.find_users(query)
            status = 404 if query and profile is None else 200
            return HTMLResponse(
                pages.render_user_page(query, profile, events, matches), status_code=status
            )

        async def event_page(request: Request) -> HTMLResponse:
            name = request.query_params.get("event", "")
            arrivals = store.find_events(event=name, limit=PAGE_EVENTS_LIMIT, newest_first=True)
            return HTMLResponse(pages.render_event_page(name, arrivals, PAGE_EVENTS_LIMIT))

        routes = [
            Route("/", events_page),
            Route("/events", event_page),
            Route("/users", users_page),
            Route("/_sandbox/stats", stats),
            Route("/_sandbox/users/{user_id:path}", user),
            Route("/_sandbox/events", events),
            Route("/_sandbox/event_names", event_names),
            Route("/_sandbox/faults", faults, methods=["GET", "POST"]),
            Route("/_sandbox/clock", clock, methods=["GET", "POST"]),
            Route("/_sandbox/arrivals", arrivals),
            Route("/_sandbox/reset", reset, methods=["POST"]),
        ]
        return Starlette(routes=routes)


def create_app(
    api_key: str, store: SandboxStore | None = None, faults: Faults | None = None
) -> SandboxApp:
    """The sandbox application; `store` holds everything it receives."""
    return SandboxApp(api_key, store, faults)


# -- profile changes for the token and subscription endpoints -------------------------------


def _register(platform: str, token: str, profile: dict[str, Any]) -> None:
    register_token(profile, platform, token)


def _disable(platform: str, token: str | None, profile: dict[str, Any]) -> None:
    disable_token(profile, platform, token)


def _subscription(unsubscribe: bool, campaigns: list | None, profile: dict[str, Any]) -> None:
    if campaigns is None:
        profile["unsubscribed_all"] = unsubscribe
        if not unsubscribe:
            profile["unsubscribed_campaigns"] = []
        return
    current = profile.setdefault("unsubscribed_campaigns", [])
    for campaign in campaigns:
        if unsubscribe and campaign not in current:
            current.append(campaign)
        elif not unsubscribe and campaign in current:
            current.remove(campaign)


# -- raw ASGI helpers -------------------------------------------------------------------------


async def _read_body(receive: Receive) -> bytes:
    message = await receive()
    body = message.get("body", b"")
    if not message.get("more_body"):
        return body
    chunks = [body]
    while message.get("more_body"):
        message = await receive()
        chunks.append(message.get("body", b""))
    return b"".join(chunks)


def _has_key(scope: Scope, key: bytes) -> bool:
    for name, value in scope["headers"]:
        if name == b"x-outbound-key":
            return value == key
    return False


async def _send(
    send: Send,
    status: int,
    body: bytes,
    headers: list[tuple[bytes, bytes]] | None = None,
    allow: bool = False,
) -> None:
    all_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *(headers or ()),
    ]
    if allow:
        all_headers.append((b"allow", b"POST"))
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": body})


async def _drop_connection(send: Send) -> None:
    """Close the socket without a response (the client sees the server disconnect).

    uvicorn's `send` is a bound method of its request cycle, which holds the transport;
    on another server the request fails with a 500 instead."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None:
        raise ConnectionAbortedError("dropped by fault injection")
    transport.close()
    for _ in range(3):  # let connection_lost run so the server does not answer after all
        await asyncio.sleep(0)
