"""Errors of the warehouse edge that the CLI turns into exit code 2 with one clear line."""

from __future__ import annotations


class WarehouseError(Exception):
    """The warehouse cannot be read as configured (unreachable, missing schema or table)."""


#: Top-level modules whose exceptions are the warehouse's (or its driver's) answer to how
#: it was configured, not a bug of the job: shown as one line, never a traceback.
DRIVER_MODULES = frozenset(
    {
        "duckdb",
        "_duckdb",
        "adbc_driver_manager",
        "psycopg",
        "psycopg2",
        "snowflake",
        "fakesnow",
        "google",
        "sqlalchemy_bigquery",
        "sqlalchemy_redshift",
    }
)


def is_driver_error(exc: BaseException) -> bool:
    """Whether a driver or dialect package raised this exception."""
    module = type(exc).__module__ or ""
    return module.split(".")[0] in DRIVER_MODULES


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (the driver's own, when wrapped)."""
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
