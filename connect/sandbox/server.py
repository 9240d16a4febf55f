"""Running the sandbox: in this process (the CLI) or as a child process (demo, tests)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
import time
from dataclasses import dataclass

import httpx

log = logging.getLogger(__name__)

READY_PREFIX = "connect-sandbox listening on "


def serve(host: str = "127.0.0.1", port: int = 8765, api_key: str = "sandbox-key") -> None:
    """Serve until interrupted; prints one line with the address once it is bound."""
    import uvicorn

    from connect.sandbox.app import create_app

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound_host, bound_port = sock.getsockname()[:2]
    config = uvicorn.Config(
        create_app(api_key), log_level="warning", access_log=False, lifespan="off"
    )
    print(f"{READY_PREFIX}http://{bound_host}:{bound_port}", flush=True)
    uvicorn.Server(config).run(sockets=[sock])


@dataclass
class SandboxProcess:
    """A sandbox server in a child process, on a free loopback port."""

    process: subprocess.Popen[str]
    url: str
    api_key: str

    @property
    def api_url(self) -> str:
        return f"{self.url}/v2"

    def stats(self) -> dict[str, int]:
        return httpx.get(f"{self.url}/_sandbox/stats", timeout=10).json()

    def reset(self) -> None:
        httpx.post(f"{self.url}/_sandbox/reset", timeout=10).raise_for_status()

    def stop(self) -> None:
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
    """Start `python -m connect.sandbox` on a free port and wait until it answers."""
    command = [
        sys.executable,
        "-m",
        "connect.sandbox",
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
