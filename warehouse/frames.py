"""Query results as DataFrames with Arrow-backed dtypes: the same types from every driver."""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import TextClause
from sqlalchemy.engine import Connection

from warehouse.engine import is_duckdb


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """Arrow dtypes keep integers integers and booleans booleans through nulls."""
    return table.to_pandas(types_mapper=pd.ArrowDtype)


def rows_to_arrow(keys: list[str], rows: list[tuple[Any, ...]]) -> pa.Table:
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in keys]
    return pa.table({key: pa.array(list(col)) for key, col in zip(keys, columns, strict=True)})


def iter_frames(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int
) -> Iterator[pd.DataFrame]:
    """Stream a query as DataFrames of at most `chunk_size` rows.

    Always yields at least one frame, empty but with the result's columns when there
    are no rows.
    """
    yielded = False
    if is_duckdb(conn.engine):
        result = conn.execute(clause, dict(params))
        with warnings.catch_warnings():  # the copy it warns of is one Arrow batch at a time
            warnings.simplefilter("ignore", UserWarning)
            reader = result.cursor.to_arrow_reader(chunk_size)  # native Arrow path
        for batch in reader:
            if batch.num_rows:
                yielded = True
                yield arrow_to_frame(pa.Table.from_batches([batch]))
        if not yielded:
            yield arrow_to_frame(reader.schema.empty_table())
        return
    result = conn.execution_options(stream_results=True, yield_per=chunk_size).execute(
        clause, dict(params)
    )
    keys = list(result.keys())
    while rows := result.fetchmany(chunk_size):
        yielded = True
        yield arrow_to_frame(rows_to_arrow(keys, [tuple(r) for r in rows]))
    if not yielded:
        yield pd.DataFrame(columns=keys)


def read_frame(
    conn: Connection, clause: TextClause, params: Mapping[str, Any], chunk_size: int = 1_000_000
) -> pd.DataFrame:
    """The whole result as one DataFrame."""
    frames = list(iter_frames(conn, clause, params, chunk_size))
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
