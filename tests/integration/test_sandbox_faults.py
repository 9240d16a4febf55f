"""Fault injection over real HTTP (5xx, 429 + Retry-After, latency, dropped connections) and
the sandbox's options as a child process: faults from the start, SQLite storage with --db."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from connect_sync.connect.sandbox.server import SandboxProcess, start_sandbox_process

TRACK = {"user_id": "u1", "event": "Faulted"}


def send(sandbox: SandboxProcess, client: httpx.Client, n: int = 1) -> list[httpx.Response]:
    return [
        client.post(f"{sandbox.api_url}/track", json={**TRACK, "timestamp": i}) for i in range(n)
    ]


@pytest.fixture
def client(sandbox: SandboxProcess):
    with httpx.Client(headers={"X-Outbound-Key": sandbox.api_key}, timeout=10) as http:
        yield http


def faults(sandbox: SandboxProcess, **values) -> httpx.Response:
    return sandbox.http.post("/_sandbox/faults", json=values)


def test_faults_are_set_read_validated_and_cleared_by_reset(sandbox) -> None:
    assert sandbox.http.get("/_sandbox/faults").json() == {
        "error_rate": 0.0,
        "rate_limit_per_s": None,
        "latency_ms": 0.0,
        "drop_rate": 0.0,
        "seed": None,
        "drop_after_rate": 0.0,
        "max_body_bytes": None,
        "throttle_first": 0,
        "retry_after_s": None,
        "slow_answer_ms": 0.0,
    }
    chosen = {"error_rate": 0.2, "rate_limit_per_s": 50, "latency_ms": 20, "drop_rate": 0.05}
    assert faults(sandbox, **chosen).json() == {
        **chosen,
        "seed": None,
        "drop_after_rate": 0.0,
        "max_body_bytes": None,
        "throttle_first": 0,
        "retry_after_s": None,
        "slow_answer_ms": 0.0,
    }
    assert sandbox.http.get("/_sandbox/faults").json()["drop_rate"] == 0.05

    for bad in (
        {"error_rate": 1.5},
        {"drop_rate": -0.1},
        {"latency_ms": "slow"},
        {"nope": 1},
        {"drop_after_rate": 2},
        {"max_body_bytes": -1},
        {"throttle_first": 1.5},
        {"retry_after_s": "soon"},
        {"slow_answer_ms": -5},
    ):
        response = faults(sandbox, **bad)
        assert response.status_code == 400
        assert response.json()["error"]["Code"] == "invalid_faults"
    assert sandbox.http.get("/_sandbox/faults").json()["error_rate"] == 0.2

    sandbox.reset()
    assert sandbox.http.get("/_sandbox/faults").json()["error_rate"] == 0.0


def test_error_rate_answers_500_or_503_and_stores_nothing(sandbox, client) -> None:
    faults(sandbox, error_rate=1.0, seed=3)

    responses = send(sandbox, client, 12)
    batch = client.post(f"{sandbox.api_url}/identify/batch", json=[{"user_id": "u1"}] * 5)

    statuses = {r.status_code for r in [*responses, batch]}
    assert statuses == {500, 503}
    assert all(r.json()["error"]["Code"] == "server_error" for r in responses)
    stats = sandbox.stats()
    assert stats["errors_injected"] == stats["requests"] == 13
    assert stats["events"] == stats["users"] == stats["track_items"] == 0


def test_error_rate_is_a_share_and_a_seed_repeats_it(sandbox, client) -> None:
    faults(sandbox, error_rate=0.5, seed=42)
    first = [r.status_code for r in send(sandbox, client, 40)]
    faults(sandbox, error_rate=0.5, seed=42)
    second = [r.status_code for r in send(sandbox, client, 40)]

    assert first == second
    assert 5 <= sum(s != 200 for s in first) <= 35
    stats = sandbox.stats()
    assert stats["events"] == 2 * first.count(200)  # exactly the answered ones were stored
    assert stats["errors_injected"] == 2 * (40 - first.count(200))


def test_rate_limit_answers_429_with_retry_after_and_stores_nothing(sandbox, client) -> None:
    faults(sandbox, rate_limit_per_s=4)

    started = time.monotonic()
    responses = send(sandbox, client, 12)
    elapsed = time.monotonic() - started

    limited = [r for r in responses if r.status_code == 429]
    accepted = [r for r in responses if r.status_code == 200]
    assert len(accepted) + len(limited) == 12
    assert 4 <= len(accepted) <= 4 + 4 * elapsed + 1 and limited  # a second's burst, then 4/s
    for response in limited:
        assert int(response.headers["Retry-After"]) >= 1
        assert response.json()["error"]["Code"] == "rate_limited"
    stats = sandbox.stats()
    assert stats["rate_limited"] == len(limited)
    assert stats["events"] == len(accepted) and stats["requests"] == 12

    time.sleep(1.0)  # the limit is per second: after waiting, requests pass again
    assert send(sandbox, client, 1)[0].status_code == 200


def test_latency_slows_every_request_but_stores_it(sandbox, client) -> None:
    faults(sandbox, latency_ms=150)

    started = time.perf_counter()
    responses = send(sandbox, client, 3)
    elapsed = time.perf_counter() - started

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert elapsed >= 0.45
    assert sandbox.stats()["events"] == 3


def test_dropped_connections_get_no_response_and_store_nothing(sandbox, client) -> None:
    faults(sandbox, drop_rate=1.0)

    for path, body in (("/track", TRACK), ("/identify/batch", [{"user_id": "u1"}])):
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            client.post(f"{sandbox.api_url}{path}", json=body)

    stats = sandbox.stats()
    assert stats["connections_dropped"] == stats["requests"] == 2
    assert stats["events"] == stats["users"] == 0
    faults(sandbox)  # the server itself is fine afterwards
    assert send(sandbox, client, 1)[0].status_code == 200


def test_faults_hit_before_the_key_is_checked_and_every_attempt_is_counted(sandbox, client) -> None:
    faults(sandbox, drop_rate=0.3, error_rate=0.3, seed=7)
    outcomes = {"dropped": 0, 200: 0, 500: 0, 503: 0}
    for i in range(60):
        try:
            response = client.post(f"{sandbox.api_url}/track", json={**TRACK, "timestamp": i})
            outcomes[response.status_code] += 1
        except httpx.TransportError:
            outcomes["dropped"] += 1

    stats = sandbox.stats()
    assert stats["requests"] == 60
    assert stats["connections_dropped"] == outcomes["dropped"] > 0
    assert stats["errors_injected"] == outcomes[500] + outcomes[503] > 0
    assert stats["events"] == outcomes[200] > 0


# -- the sandbox as its own process: faults from the command line, SQLite storage ----------


def test_fault_options_apply_from_the_start() -> None:
    extra = ["--error-rate", "1", "--latency-ms", "50", "--fault-seed", "1"]
    with start_sandbox_process("opt-key", extra_args=extra) as sandbox:
        current = sandbox.http.get("/_sandbox/faults").json()
        response = httpx.post(
            f"{sandbox.api_url}/track", json=TRACK, headers={"X-Outbound-Key": "opt-key"}
        )
        assert current["error_rate"] == 1.0 and current["latency_ms"] == 50.0
        assert response.status_code in (500, 503)
        assert sandbox.stats()["events"] == 0


def test_bad_fault_options_stop_the_sandbox_with_a_message() -> None:
    with pytest.raises(RuntimeError, match="did not start"):
        start_sandbox_process("k", extra_args=["--drop-rate", "2"])


def test_db_keeps_everything_in_sqlite_across_restarts(tmp_path: Path) -> None:
    db = tmp_path / "nested" / "sandbox.sqlite"
    headers = {"X-Outbound-Key": "db-key"}
    with start_sandbox_process("db-key", extra_args=["--db", str(db)]) as sandbox:
        for path, body in (
            ("/identify", {"user_id": "u1", "email": "a@x.co", "attributes": {"a": 1}}),
            ("/track/batch", [{"user_id": "u1", "event": "Stored", "timestamp": 1}] * 2),
            ("/apns/register", {"user_id": "u1", "token": "tok"}),
        ):
            assert httpx.post(f"{sandbox.api_url}{path}", json=body, headers=headers).is_success
        before = sandbox.stats()

    with sqlite3.connect(db) as conn:  # browsable with any SQLite tool after the run
        assert conn.execute("SELECT count(*) FROM events WHERE event = 'Stored'").fetchone() == (2,)
        assert conn.execute("SELECT json_extract(profile, '$.email') FROM users").fetchone() == (
            "a@x.co",
        )

    with start_sandbox_process("db-key", extra_args=["--db", str(db)]) as again:
        assert again.stats() == before
        assert again.user("u1")["apns"] == ["tok"]
        assert "Stored" in httpx.get(f"{again.url}/", timeout=10).text
        track = {"user_id": "u1", "event": "Stored", "timestamp": 1}
        httpx.post(f"{again.api_url}/track", json=track, headers=headers)
        assert again.stats()["duplicate_events"] == before["duplicate_events"] + 1
        again.reset()
        assert again.stats()["events"] == 0

    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (0,)


def test_db_that_is_not_a_sandbox_database_is_refused(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE precious (x)")
    with pytest.raises(RuntimeError, match="did not start"):
        start_sandbox_process("k", extra_args=["--db", str(other)])
    with sqlite3.connect(other) as conn:
        assert conn.execute("SELECT count(*) FROM precious").fetchone() == (0,)


def test_cli_sandbox_command_takes_db_and_fault_options(tmp_path: Path) -> None:
    db = tmp_path / "cli.sqlite"
    command = [sys.executable, "-m", "connect_sync", "sandbox", "--port", "0"]
    options = ["--api-key", "cli-key", "--db", str(db), "--rate-limit", "1", "--latency-ms", "5"]
    process = subprocess.Popen([*command, *options], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().strip().rsplit(" ", 1)[-1]
        assert url.startswith("http://127.0.0.1:")
        current = httpx.get(f"{url}/_sandbox/faults", timeout=10).json()
        headers = {"X-Outbound-Key": "cli-key"}
        statuses = [
            httpx.post(f"{url}/v2/track", json=TRACK, headers=headers, timeout=10).status_code
            for _ in range(3)
        ]
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert current["rate_limit_per_s"] == 1.0 and current["latency_ms"] == 5.0
    assert statuses[0] == 200 and 429 in statuses
    with sqlite3.connect(db) as conn:
        assert conn.execute("SELECT count(*) FROM events").fetchone() == (statuses.count(200),)

    bad = subprocess.run(
        [*command, "--error-rate", "3"], capture_output=True, text=True, timeout=30
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == "error: error_rate must be between 0 and 1"


def test_max_body_bytes_answers_413_and_stores_nothing(sandbox, client) -> None:
    faults(sandbox, max_body_bytes=200)

    small = client.post(f"{sandbox.api_url}/track", json=TRACK)
    large = client.post(f"{sandbox.api_url}/track/batch", json=[TRACK] * 20)

    assert small.status_code == 200
    assert large.status_code == 413 and large.json()["error"]["Code"] == "too_large"
    assert sandbox.stats()["events"] == 1 and sandbox.stats()["requests"] == 2


def test_throttle_first_answers_429_with_the_chosen_retry_after(sandbox, client) -> None:
    faults(sandbox, throttle_first=2, retry_after_s=7)

    responses = send(sandbox, client, 3)

    assert [r.status_code for r in responses] == [429, 429, 200]
    assert [r.headers.get("Retry-After") for r in responses[:2]] == ["7", "7"]
    assert sandbox.stats()["rate_limited"] == 2


def test_drop_after_rate_stores_the_request_then_cuts_the_connection(sandbox, client) -> None:
    faults(sandbox, drop_after_rate=1.0)

    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.post(f"{sandbox.api_url}/track", json=TRACK)

    stats = sandbox.stats()
    assert stats["events"] == 1 and stats["connections_dropped"] == stats["requests"] == 1


def test_arrivals_record_every_api_request_in_order_and_reset_forgets_them(sandbox, client) -> None:
    faults(sandbox, error_rate=1.0)
    before = time.time()
    send(sandbox, client, 2)
    client.post(f"{sandbox.api_url}/identify/batch", json=[])

    arrivals = sandbox.arrivals()

    assert [a["path"] for a in arrivals] == ["/v2/track", "/v2/track", "/v2/identify/batch"]
    assert before - 1 <= arrivals[0]["at"] <= arrivals[1]["at"] <= arrivals[2]["at"]
    sandbox.reset()
    assert sandbox.arrivals() == []


def test_an_empty_batch_probe_is_answered_but_counted_nowhere(sandbox, client) -> None:
    faults(sandbox, error_rate=1.0, rate_limit_per_s=1, drop_rate=0.0)

    answers = [client.post(f"{sandbox.api_url}/identify/batch", json=[]) for _ in range(3)]
    wrong = client.post(
        f"{sandbox.api_url}/track/batch", json=[], headers={"X-Outbound-Key": "wrong"}
    )

    assert {a.status_code for a in answers} == {400}
    assert answers[0].json()["error"]["Code"] == "empty_batch"
    assert wrong.status_code == 401
    assert sandbox.stats()["requests"] == sandbox.stats()["unauthorized"] == 0


def test_slow_answer_stores_at_once_and_answers_later(sandbox, client) -> None:
    faults(sandbox, slow_answer_ms=1_000)

    with pytest.raises(httpx.ReadTimeout):
        client.post(f"{sandbox.api_url}/track", json=TRACK, timeout=0.3)

    assert sandbox.stats()["events"] == 1  # stored although the client never heard so
