"""bqemulator's command line, with its Storage Read API able to read query results.

Run with the emulator's own interpreter (`.venv-bqemulator/bin/python`), never imported by
the tests. bqemulator 1.4.0 names a query's results `<project>._bqemu_anonymous.anon<job>`
(as BigQuery names an anonymous destination table), and serves that name over REST from
the job's results, but its Storage Read API looks the name up in DuckDB, where no such
table exists (`Catalog Error: ... schema "<project>___bqemu_anonymous" does not exist`).
Here its read of such a name is answered from the job's results, as its REST route does.

Its ReadRows answers are record batches of 65,536 rows whatever their width, which for a
wide result exceed its own gRPC send limit (its write API's 10 MiB cap plus 1 MiB): "Sent
message larger than max". Real BigQuery keeps each answer under its limit. The cap is
raised here, to 256 MiB.
"""

from __future__ import annotations

import os
import re
import sys

from bqemulator.cli import main
from bqemulator.jobs.executor import JOB_RESULTS
from bqemulator.storage.engine import DuckDBEngine

#: `SELECT <columns> FROM "<project>___bqemu_anonymous"."anon<job id without hyphens>"`
ANONYMOUS = re.compile(
    r'^SELECT (?P<columns>.+) FROM "[^"]*___bqemu_anonymous"\."anon(?P<job>\w+)"$'
)


def _job_id(flat: str) -> str:
    if len(flat) != 32:
        return flat
    return f"{flat[0:8]}-{flat[8:12]}-{flat[12:16]}-{flat[16:20]}-{flat[20:32]}"


def _fetch_arrow(self, sql, parameters=None):
    match = ANONYMOUS.match(sql.strip())
    if match is None or (table := JOB_RESULTS.get(_job_id(match["job"]))) is None:
        return _original(self, sql, parameters)
    columns = match["columns"]
    if columns.strip() == "*":
        return table
    return table.select([name.strip().strip('"') for name in columns.split(",")])


_original = DuckDBEngine.fetch_arrow
DuckDBEngine.fetch_arrow = _fetch_arrow

if __name__ == "__main__":
    os.environ.setdefault("BQEMU_WRITE_API_MAX_REQUEST_BYTES", str(256 * 1024 * 1024))
    sys.exit(main())
