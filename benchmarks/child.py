"""One child process timed to its end, for the benchmark scripts (`from child import
run_child`: a script's own folder is on its path)."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def run_child(command: list[str], cwd: Path, env: dict[str, str], timeout: float) -> dict:
    """Run a child to its end (killed past `timeout` seconds), its output in
    `cwd/child.log`: wall and CPU seconds, peak RSS (`os.wait4`: the child's own, from
    its start), exit status and the last lines it wrote."""
    started = time.perf_counter()
    with open(cwd / "child.log", "w") as log:
        child = subprocess.Popen(
            command, cwd=cwd, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT
        )
        deadline = started + timeout
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                child.kill()
                pid, status, usage = os.wait4(child.pid, 0)
                break
            time.sleep(0.02)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss_mb": usage.ru_maxrss / 1024,
        "exit": os.waitstatus_to_exitcode(status),
        "tail": (cwd / "child.log").read_text(errors="replace").strip().splitlines()[-12:],
    }
