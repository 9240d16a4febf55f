"""A misbehaving HTTP server of the tests' own, on loopback: it answers every POST with
whatever the test scripts (status, headers, body, delay), or forwards it (a proxy)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes


class Rogue:
    """`with Rogue(reply) as rogue:` serves at `rogue.url`; `rogue.seen` lists requests.

    `reply` is a Reply, or a function of the request (a Seen) returning one."""

    def __init__(self, reply: Reply | Callable[[Seen], Reply]) -> None:
        self.reply = reply
        self.seen: list[Seen] = []
        rogue = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                seen = Seen(self.path, dict(self.headers.items()), self.rfile.read(length))
                rogue.seen.append(seen)
                reply = rogue.reply(seen) if callable(rogue.reply) else rogue.reply
                if reply.delay_s:
                    time.sleep(reply.delay_s)
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.handle_error = lambda *args: None  # clients that hang up are expected
        host, port = self.server.server_address[:2]
        self.url = f"http://{host}:{port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def posts(self, path_end: str) -> list[Seen]:
        """Requests whose path ends so (e.g. "/track/batch")."""
        return [s for s in self.seen if s.path.endswith(path_end)]

    def __enter__(self) -> Rogue:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def forwarding_to(client: httpx.Client) -> Callable[[Seen], Reply]:
    """A reply function that acts as a plain HTTP forward proxy (absolute-form targets)."""

    def forward(seen: Seen) -> Reply:
        headers = {k: v for k, v in seen.headers.items() if k.lower() not in ("host",)}
        answer = client.post(seen.path, content=seen.body, headers=headers)
        kept = {k: v for k, v in answer.headers.items() if k.lower() == "content-type"}
        return Reply(answer.status_code, answer.content, {**kept, "Via": "1.1 rogue-proxy"})

    return forward
