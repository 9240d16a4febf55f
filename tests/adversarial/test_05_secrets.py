"""#17.5: passwords in URLs are never stored or printed: not in Prefect flow-run parameters,
not in the run's stored report or error, not in recorded rejections."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson
import pytest
from connect_sync.flows.pipeline import SyncJob, SyncOptions, run_sync
from connect_sync.warehouse.engine import create_engine
from connect_sync.warehouse.state import StateStore

from connect_sync.secrets import mask_text
from connect_sync.settings import Settings
from tests.segment_rows import row, write_tables

WAREHOUSE_PASSWORD = "wh-hunter2"
API_PASSWORD = "api-swordfish"


def _with_password(postgres_url: str) -> str:
    """The test database's URL with a password (trust auth accepts any)."""
    scheme, rest = postgres_url.split("://", 1)
    user_host = rest.split("@", 1)[-1]
    return f"{scheme}://postgres:{WAREHOUSE_PASSWORD}@{user_host}"


def _bad_api() -> str:
    """A CONNECT_API_URL the client refuses, with a message quoting the URL."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"htp://connect:{API_PASSWORD}@127.0.0.1:{sock.getsockname()[1]}/v2"


def test_mask_text_hides_url_passwords() -> None:
    assert mask_text("postgresql://bob:p@ss@db:5432/x") == "postgresql://bob:***@db:5432/x"
    assert (
        mask_text("at https://u:pw@h/v2?api_key=k&x=1") == "at https://u:***@h/v2?api_key=***&x=1"
    )
    assert mask_text("duckdb:///a/b.duckdb at 10:30") == "duckdb:///a/b.duckdb at 10:30"


def test_a_refused_api_url_is_told_without_its_password(
    postgres_url: str, pg_schema: str, tmp_path: Path
) -> None:
    url = _with_password(postgres_url)
    write_tables(url, pg_schema, {"tracks": [row(0, user_id="u1", event="A", event_text="A")]})
    settings = Settings(
        warehouse_url=url,
        source_schema=pg_schema,
        state_schema=f"{pg_schema}_state",
        api_url=_bad_api(),
        api_key="k",
        max_retries=0,
        journal_dir=tmp_path / "journal",
    )
    with pytest.raises(Exception, match="CONNECT_API_URL") as refused:
        run_sync(settings, SyncOptions())  # refused before the run starts: nothing stored
    assert API_PASSWORD not in str(refused.value)
    assert WAREHOUSE_PASSWORD not in str(refused.value)


def test_stored_report_and_rejections_hold_no_password(
    postgres_url: str, pg_schema: str, tmp_path: Path, sandbox
) -> None:
    """A run that fails after it started stores its error masked (here: an error that
    quotes both URLs, as a driver's or an HTTP client's might)."""
    url = _with_password(postgres_url)
    write_tables(url, pg_schema, {"tracks": [row(0, user_id="u1", event="A", event_text="A")]})
    api_url = sandbox.api_url.replace("http://", f"http://connect:{API_PASSWORD}@")
    settings = Settings(
        warehouse_url=url,
        source_schema=pg_schema,
        state_schema=f"{pg_schema}_state",
        api_url=api_url,
        api_key=sandbox.api_key,
        journal_dir=tmp_path / "journal",
    )
    job = SyncJob(settings, SyncOptions())
    job.prepare()
    report = job.finish(RuntimeError(f"lost {url} while sending to {api_url}"))
    assert report.status == "failed"
    store = StateStore(create_engine(url), settings.state_schema, settings.books_key)
    stored = repr([store.recent_runs(), store.rejections().to_dict("records")]).encode()
    assert WAREHOUSE_PASSWORD.encode() not in stored
    assert API_PASSWORD.encode() not in stored
    assert b"lost postgresql" in stored  # the error is stored, masked
    store.engine.dispose()


@pytest.fixture
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


def test_prefect_parameters_hold_no_password(
    prefect_harness, postgres_url: str, pg_schema: str, sandbox, tmp_path: Path
) -> None:
    from connect_sync.flows.sync import run_job_flow
    from prefect.client.orchestration import get_client

    url = _with_password(postgres_url)
    write_tables(url, pg_schema, {"tracks": [row(0, user_id="u1", event="A", event_text="A")]})
    settings = Settings(
        warehouse_url=url,
        state_url=url,
        source_schema=pg_schema,
        state_schema=f"{pg_schema}_state",
        api_url=sandbox.api_url,
        api_key=sandbox.api_key,
        journal_dir=tmp_path / "journal",
    )
    report = run_job_flow(settings, SyncOptions())
    assert report.status == "succeeded" and report.events_sent == 1
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
    assert runs
    stored = orjson.dumps([r.parameters for r in runs], default=str)
    assert WAREHOUSE_PASSWORD.encode() not in stored
    assert sandbox.api_key.encode() not in stored
    assert pg_schema.encode() in stored  # the parameters are there, only masked
