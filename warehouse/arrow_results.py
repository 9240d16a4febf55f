"""Arrow straight from a cloud warehouse's driver, after SQLAlchemy ran the statement.

Snowflake's connector downloads result chunks as Arrow (`fetch_arrow_batches`); BigQuery's
client reads a result through the Storage Read API (gRPC, Arrow record batches) when a
storage client is configured, else its REST pages, decoded into Arrow by the client
library. Either way no Python tuple is built per row, as the SQLAlchemy row path does
(about 10 us of CPU per row).

A driver may have no Arrow result for a statement (Snowflake answers some in JSON; an old
connector; a cursor that is not the library's own): the reader then says None, before
anything was fetched, and the caller reads the same result's rows instead.

The types the driver gives are not the last word: `frames` casts each column to the
table's declared type (the cursor's description), as on the row path, so a chunk of
NULLs or a narrower integer encoding in one result chunk never changes a column's type.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pyarrow as pa

log = logging.getLogger(__name__)

#: The driver's Arrow tables or batches for a DB-API cursor that executed a statement,
#: or None when it has none for it.
ArrowResult = Callable[[Any, Any], Iterable[pa.Table | pa.RecordBatch] | None]


def snowflake_arrow(cursor: Any, dbapi_connection: Any) -> Iterable[pa.Table] | None:
    """Snowflake's result chunks as Arrow tables, timestamps in microseconds (the
    connector's own choice per chunk could differ from one chunk to the next)."""
    fetch = getattr(cursor, "fetch_arrow_batches", None)
    if fetch is None:
        return None
    try:
        return fetch(force_microsecond_precision=True)
    except TypeError:  # a connector older than 3.13 has no such argument
        return fetch()
    except Exception as exc:  # NotSupportedError: the result came as JSON
        log.debug("Snowflake has no Arrow result here (%s); reading rows", exc)
        return None


def bigquery_arrow(cursor: Any, dbapi_connection: Any) -> Iterable[pa.RecordBatch] | None:
    """BigQuery's result as Arrow batches: through the Storage Read API when the
    connection holds a storage client (`google-cloud-bigquery-storage`, the `bigquery`
    extra), else from the REST result pages."""
    # The DB-API cursor keeps the executed query's RowIterator in `_query_rows`, and the
    # connection its storage client in `_bqstorage_client`: the library has no public name
    # for either (its own fetch uses them).
    rows = getattr(cursor, "_query_rows", None)
    if rows is None or not hasattr(rows, "to_arrow_iterable"):
        return None
    storage = getattr(dbapi_connection, "_bqstorage_client", None)
    return rows.to_arrow_iterable(bqstorage_client=storage)


#: Dialects whose driver hands out Arrow results, and how to ask for them.
ARROW_RESULTS: dict[str, ArrowResult] = {
    "snowflake": snowflake_arrow,
    "bigquery": bigquery_arrow,
}


def record_batches(pieces: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Tables or batches, as batches (zero-copy)."""
    for piece in pieces:
        if isinstance(piece, pa.Table):
            yield from piece.to_batches()
        else:
            yield piece
