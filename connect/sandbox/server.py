"""Running the sandbox: in this process (the CLI) or as a child process (demo, tests)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
from connect_sync.connect.sandbox.faults import Faults

log = logging.getLogger(__name__)

READY_PREFIX = "connect-sandbox listening on "


def serve(
    host: str = "127.0.0.1",
    port: int = 8765,
    api_key: str = "sandbox-key",
    db: str | Path | None = None,
    faults: Faults | None = None,
) -> None:
    """Serve until interrupted; prints one line with the address once it is bound.

    `db`: keep everything in this SQLite file (opened again if it exists) instead of memory.
    `faults`: what to inject from the start (POST /_sandbox/faults changes it later)."""
    import uvicorn
    from connect_sync.connect.sandbox.app import create_app
    from connect_sync.connect.sandbox.store import SandboxStore

    store = SandboxStore(db)
    # proto=IPPROTO_TCP so that asyncio sets TCP_NODELAY on accepted connections (with
    # proto 0 it does not, and Nagle + delayed ACKs stall every response by ~40 ms).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    # Listen before saying where: a client that connects as soon as it reads the address
    # waits in the backlog until uvicorn accepts, instead of being refused (it was, now
    # and then, on a loaded machine).
    sock.listen(1024)
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(api_key, store, faults),
        log_level="warning",
        access_log=False,
        lifespan="off",
        backlog=1024,
        # keep idle connections long: a client reusing one the server just closed would see
        # an error for a request the sandbox never counted
        timeout_keep_alive=75,
    )
    print(f"{READY_PREFIX}http://{bound_host}:{bound_port}", flush=True)
    try:
        uvicorn.Server(config).run(sockets=[sock])
    finally:
        store.close()


@dataclass
class SandboxProcess:
    """A sandbox server in a child process, on a free loopback port."""

    process: subprocess.Popen[str]
    url: str
    api_key: str

    _http: httpx.Client | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2"

    @property
    def http(self) -> httpx.Client:
        """A keep-alive client for the introspection routes (one per process object)."""
        if self._http is None:
            self._http = httpx.Client(base_url=self.url, timeout=30)
        return self._http

    def stats(self) -> dict[str, int]:
        return self.http.get("/_sandbox/stats").raise_for_status().json()

    def reset(self) -> None:
        """Forget everything received, and any faults."""
        self.http.post("/_sandbox/reset").raise_for_status()

    def set_faults(self, **faults: Any) -> dict[str, Any]:
        """Replace the injected faults (error_rate, rate_limit_per_s, latency_ms, drop_rate,
        seed, drop_after_rate, max_body_bytes, throttle_first, retry_after_s, slow_answer_ms);
        no arguments
        turns them all off."""
        return self.http.post("/_sandbox/faults", json=faults).raise_for_status().json()

    def arrivals(self) -> list[dict[str, Any]]:
        """Every API request as it arrived: `{at: wall time, path}`, oldest first."""
        return self.http.get("/_sandbox/arrivals").raise_for_status().json()

    def user(self, user_id: str) -> dict[str, Any] | None:
        """The stored, merged profile, or None."""
        response = self.http.get(f"/_sandbox/users/{quote(user_id, safe='')}")
        return None if response.status_code == 404 else response.raise_for_status().json()

    def events(self, user_id: str | None = None, event: str | None = None) -> list[dict]:
        """Stored events as `{user_id, event, properties, timestamp}`, in arrival order."""
        params = {k: v for k, v in (("user_id", user_id), ("event", event)) if v is not None}
        return self.http.get("/_sandbox/events", params=params).raise_for_status().json()

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> SandboxProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_sandbox_process(
    api_key: str,
    host: str = "127.0.0.1",
    extra_args: list[str] | None = None,
    timeout_s: float = 30.0,
) -> SandboxProcess:
    """Start `python -m connect_sync.connect.sandbox` on a free port and wait until it answers."""
    command = [
        sys.executable,
        "-P",  # not the current folder first: a repository root's connect_sync/ would shadow
        "-m",
        "connect_sync.connect.sandbox",
        "--host",
        host,
        "--port",
        "0",
        "--api-key",
        api_key,
        *(extra_args or []),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout_s
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith(READY_PREFIX):
        process.kill()
        raise RuntimeError(f"the sandbox did not start: {line.strip() or 'no output'}")
    url = line[len(READY_PREFIX) :].strip()
    sandbox = SandboxProcess(process, url, api_key)
    while time.monotonic() < deadline:
        try:
            sandbox.stats()
            return sandbox
        except httpx.TransportError:
            time.sleep(0.05)
    sandbox.stop()
    raise RuntimeError("the sandbox did not answer in time")
