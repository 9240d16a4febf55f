"""BigQuery through bqemulator (REST and the Storage Read API, DuckDB-backed), run as a
server from its own venv: its pins (sqlglot < 30.12) conflict with fakesnow's, so .ci/run
installs it apart (in the user's cache folder, named by $CONNECT_SYNC_TEST_BQEMULATOR; a
checkout's `.venv-bqemulator` also works), with the DuckDB spatial extension it needs from
PyPI (it would download it otherwise). It runs through `bqemulator_server.py`, which mends
its Storage Read API for query results."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import pytest
import sqlalchemy as sa

from tests.integration.dialects.golden import (
    Layout,
    check_golden_and_incremental,
    create_tables,
    first_rows,
    insert_rows,
)
from tests.integration.dialects.requirements import require
from tests.segment_rows import sandbox_settings

PROJECT = "test-project"
BIGQUERY = Layout(
    {
        "text": "STRING",
        "ts": "TIMESTAMP",
        "loaded": "TIMESTAMP",
        "bool": "BOOL",
        "decimal": "NUMERIC",
        "int": "INT64",
    }
)
REPO = Path(__file__).resolve().parents[3]
SERVER = Path(__file__).with_name("bqemulator_server.py")


class Emulator(NamedTuple):
    """Where the emulator answers: REST (`http://host:port`) and gRPC (`host:port`)."""

    rest: str
    grpc: str


def _emulator() -> str | None:
    path = os.environ.get("CONNECT_SYNC_TEST_BQEMULATOR") or str(
        REPO / ".venv-bqemulator" / "bin" / "bqemulator"
    )
    return path if Path(path).exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def bqemulator(tmp_path_factory) -> Iterator[Emulator]:
    """The emulator's endpoints (one server for the session)."""
    require("sqlalchemy_bigquery", "bigquery")
    executable = _emulator()
    if executable is None:
        message = (
            "bqemulator not installed (.ci/run installs it; or set "
            "CONNECT_SYNC_TEST_BQEMULATOR, or make .venv-bqemulator)"
        )
        if os.environ.get("CI") == "true":
            pytest.fail(f"required in CI: {message}")
        pytest.skip(message)
    rest, grpc = _free_port(), _free_port()
    log = tmp_path_factory.mktemp("bqemulator") / "log.txt"
    with log.open("w") as out:
        process = subprocess.Popen(
            [
                *(str(Path(executable).with_name("python")), str(SERVER)),
                *("start", "--rest-port", str(rest), "--grpc-port", str(grpc)),
                *("--project", PROJECT, "--log-level", "warning"),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    endpoint = f"http://127.0.0.1:{rest}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                httpx.get(f"{endpoint}/bigquery/v2/projects/{PROJECT}/datasets", timeout=2)
                break
            except httpx.HTTPError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"bqemulator did not start: {log.read_text()[-2000:]}")
                time.sleep(0.5)
        yield Emulator(endpoint, f"127.0.0.1:{grpc}")
    finally:
        process.terminate()
        process.wait(timeout=30)


def _connect_args(emulator: Emulator) -> dict:
    return {
        "project": PROJECT,
        "api_endpoint": emulator.rest,
        "storage_api_endpoint": emulator.grpc,
        "credentials": "anonymous",
    }


@pytest.fixture
def dataset(bqemulator) -> str:
    return f"seg_{uuid.uuid4().hex[:8]}"


def _writer(emulator: Emulator, dataset: str):
    from connect_sync.warehouse.engine import create_engine

    engine = create_engine(f"bigquery://{PROJECT}", connect_args=_connect_args(emulator))
    created = False

    def write(rows, *, twice: bool = True) -> None:
        nonlocal created
        with engine.begin() as conn:
            if not created:
                create_tables(conn, dataset, BIGQUERY)
                created = True
            insert_rows(conn, dataset, rows)
            if twice:  # Segment's BigQuery loads keep duplicate rows of one message id
                insert_rows(conn, dataset, rows)

    return write


@pytest.mark.parametrize("qualified", [False, True], ids=["dataset", "project.dataset"])
def test_golden_and_incremental_on_bigquery(
    bqemulator, dataset, qualified, sandbox, tmp_path, monkeypatch
) -> None:
    url = f"bigquery://{PROJECT}"  # no dataset in the URL: the schema setting names it
    schema = f"{PROJECT}.{dataset}" if qualified else dataset
    args = json.dumps(_connect_args(bqemulator))  # the emulator's client settings
    settings = sandbox_settings(url, schema, sandbox, chunk_size=4, warehouse_connect_args=args)
    settings = settings.model_copy(update={"state_schema": f"{dataset}_state"})
    write = _writer(bqemulator, dataset)
    check_golden_and_incremental(settings, write, sandbox, tmp_path, duplicates=True)


def test_a_missing_dataset_is_named(bqemulator) -> None:
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.errors import WarehouseError
    from connect_sync.warehouse.segment import SegmentSource

    engine = create_engine(f"bigquery://{PROJECT}", connect_args=_connect_args(bqemulator))
    with pytest.raises(WarehouseError, match="nowhere"):
        SegmentSource(engine, "nowhere").check()


def test_bigquery_reads_only_the_needed_columns(bqemulator, dataset) -> None:
    from connect_sync.transforms.columns import identify_read_columns
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.segment import SegmentSource

    _writer(bqemulator, dataset)(first_rows(), twice=False)
    engine = create_engine(f"bigquery://{PROJECT}", connect_args=_connect_args(bqemulator))
    executed: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, s, *a: executed.append(s))
    source = SegmentSource(engine, dataset)
    frame = source.identifies(columns=identify_read_columns(source.columns("identifies")))
    assert "sent_at" not in frame.columns and "beta_tester" in frame.columns
    assert not [s for s in executed if "SELECT *" in s.upper()]


def test_bigquery_results_beyond_a_page_come_through_the_storage_read_api(
    bqemulator, dataset, monkeypatch
) -> None:
    """A result longer than its first page is read as Arrow from the Storage Read API, the
    same batches as the row path reads."""
    import pyarrow as pa
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.frames import iter_batches, native_path
    from google.cloud.bigquery_storage_v1 import BigQueryReadClient

    _writer(bqemulator, dataset)(first_rows(), twice=False)
    read_rows = BigQueryReadClient.read_rows
    streams: list[str] = []

    def counted(self, name, *args, **kwargs):
        streams.append(name)
        return read_rows(self, name, *args, **kwargs)

    monkeypatch.setattr(BigQueryReadClient, "read_rows", counted)
    # pages of 2 rows: every result here is longer than its first page
    engine = create_engine(
        f"bigquery://{PROJECT}?arraysize=2", connect_args=_connect_args(bqemulator)
    )
    query = sa.text(f"SELECT * FROM `{dataset}`.identifies WHERE user_id IS NOT NULL ORDER BY id")
    read = {}
    for native in (True, False):
        with engine.connect() as conn:
            schema, batches = iter_batches(conn, query, {}, 3, native=native)
            read[native] = (schema, pa.Table.from_batches(list(batches), schema=schema))
            if native:
                assert native_path(conn) == "bigquery-arrow"
                assert streams, "no read through the Storage Read API"
    engine.dispose()
    assert read[True][0] == read[False][0]
    assert read[True][1].num_rows > 2
    assert read[True][1].equals(read[False][1])


def test_segment_views_are_read_instead_of_the_base_tables_when_asked(bqemulator, dataset) -> None:
    """Segment's `<table>_view` (one row per message id) is read where it exists; a table
    without its view is read as it is."""
    from connect_sync.warehouse.engine import create_engine
    from connect_sync.warehouse.segment import SegmentSource

    _writer(bqemulator, dataset)(first_rows())  # each row twice, as Segment's loads do
    engine = create_engine(f"bigquery://{PROJECT}", connect_args=_connect_args(bqemulator))
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                f"CREATE VIEW `{dataset}`.identifies_view AS SELECT * EXCEPT (n) FROM ("
                f" SELECT *, ROW_NUMBER() OVER (PARTITION BY id) AS n"
                f" FROM `{dataset}`.identifies) WHERE n = 1"
            )
        )
    executed: list[str] = []
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, s, *a: executed.append(s))
    columns = ["id", "user_id", "email"]
    base = SegmentSource(engine, dataset).identifies(columns=columns)
    viewed = SegmentSource(engine, dataset, views=True).identifies(columns=columns)
    assert len(base) == 2 * len(viewed) and set(viewed["id"]) == set(base["id"])
    assert [s for s in executed if "identifies_view" in s]
    assert SegmentSource(engine, dataset, views=True).relation("aliases") == "aliases"
