"""What each supported warehouse can do, declared once (as dlt's destination capabilities).

Modules ask `capabilities(name)` instead of testing a dialect's name: adding a warehouse,
or learning that one can do more, is one entry here. Implementations that differ by
dialect stay beside their code, keyed by the same names: the readers of driver Arrow
(`arrow_results.ARROW_RESULTS`), the connect-argument builders (`engine`), the read-only
audience runs (`audience.READ_ONLY_RUNS`) and the type codes of cursor descriptions
(`frames.DESCRIBED_CODES`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

#: How the state store upserts: `INSERT ... ON CONFLICT`, `MERGE` from bound rows, or rows
#: staged in a temp table, then updated and inserted in one transaction.
UpsertStyle = Literal["on_conflict", "merge", "staged"]


@dataclass(frozen=True)
class WarehouseCapabilities:
    """One warehouse, by its SQLAlchemy dialect (and URL backend) name."""

    name: str
    #: The pip extra that installs its driver (None: always installed).
    extra: str | None
    #: sqlglot's name for its SQL: audience files are checked and translated into it.
    sqlglot: str
    upsert: UpsertStyle
    #: Its schemas and tables are listed with the job's own `information_schema` query
    #: (`sql/schema_tables.sql`), not SQLAlchemy's inspector (sqlalchemy-redshift's reads
    #: Redshift-only catalog columns; BigQuery's cannot name another project's dataset).
    tables_by_query: bool = False
    #: The state store asks whether its tables exist with that query too.
    state_catalog_by_query: bool = False
    #: Bills by bytes scanned: a stream reads each table once per run, never per bucket.
    single_scan: bool = False
    #: Has a set-based way to stage keys for one statement (an Arrow table registered on
    #: DuckDB, COPY into a temp table on PostgreSQL): lookups of many keys join, not IN.
    stages_keys: bool = False
    #: Has advisory locks (`pg_advisory_lock`, `pg_advisory_xact_lock`): the run lock and
    #: the adoption of legacy books take one.
    advisory_locks: bool = False
    #: Can keep the rate schedule shared by all workers (`sql/rate_limit_*.sql`).
    shared_rate_schedule: bool = False
    #: Binds a list as one array parameter (`= ANY(:id_list)`), however long; the others
    #: take IN lists of at most `segment.ID_CHUNK` values a statement.
    array_parameters: bool = False
    #: How a connection that cannot write is opened: connect arguments and URL query to
    #: add (none: it opens as usual, and the role's grants are the guard).
    read_only_connect_args: dict[str, Any] = field(default_factory=dict)
    read_only_query: dict[str, str] = field(default_factory=dict)
    #: Connect arguments its driver gets unless the configuration says otherwise.
    driver_defaults: dict[str, Any] = field(default_factory=dict)


DIALECTS: dict[str, WarehouseCapabilities] = {
    c.name: c
    for c in (
        WarehouseCapabilities(
            "duckdb",
            extra=None,
            sqlglot="duckdb",
            upsert="on_conflict",
            stages_keys=True,
            array_parameters=True,
            # a file opened read-only shares its lock with other readers (partitions, BI
            # tools, dbt)
            read_only_connect_args={"read_only": True},
        ),
        WarehouseCapabilities(
            "postgresql",
            extra="postgres",
            sqlglot="postgres",
            upsert="on_conflict",
            stages_keys=True,
            advisory_locks=True,
            shared_rate_schedule=True,
            # every transaction read-only (`options` also reaches the ADBC reader, which
            # connects from the URL)
            read_only_query={"options": "-c default_transaction_read_only=on"},
        ),
        WarehouseCapabilities(
            "snowflake",
            extra="snowflake",
            sqlglot="snowflake",
            upsert="merge",
            # its Arrow results (the reader's) carry NUMBER(p, s) as decimals, not doubles
            driver_defaults={"arrow_number_to_decimal": True},
        ),
        WarehouseCapabilities(
            "bigquery",
            extra="bigquery",
            sqlglot="bigquery",
            upsert="merge",
            tables_by_query=True,
            single_scan=True,
        ),
        WarehouseCapabilities(
            "redshift",
            extra="redshift",
            sqlglot="redshift",
            upsert="staged",
            tables_by_query=True,
            state_catalog_by_query=True,
        ),
    )
}

#: What an unknown dialect is assumed to do: nothing beyond plain SQLAlchemy.
_PLAIN = WarehouseCapabilities("", extra=None, sqlglot="", upsert="on_conflict")


def capabilities(name: str) -> WarehouseCapabilities:
    """The capabilities of dialect `name`; plain SQLAlchemy for one not listed (the callers
    that need a listed one, such as the state store and audiences, check `name in DIALECTS`)."""
    return DIALECTS.get(name, _PLAIN)
