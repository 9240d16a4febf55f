"""One row per message id, as pandas' drop_duplicates keeps it, without copying a frame
that has no repeated id."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from connect_sync.transforms.messages import drop_repeated, unique_rows
from hypothesis import given, settings
from hypothesis import strategies as st

IDS = st.lists(st.one_of(st.none(), st.sampled_from(["m1", "m2", "m3", "é🎉", ""])), max_size=40)


def frame(ids: list[str | None], dtype: object = "string[pyarrow]") -> pd.DataFrame:
    return pd.DataFrame({"id": pd.Series(ids, dtype=dtype), "row": range(len(ids))})


@settings(max_examples=150, deadline=None)
@given(ids=IDS, keep=st.sampled_from(["first", "last"]))
def test_the_rows_pandas_keeps(ids: list[str | None], keep: str) -> None:
    for dtype in ("string[pyarrow]", pd.ArrowDtype(pa.string()), object):
        rows = frame(ids, dtype)
        expected = rows.drop_duplicates("id", keep=keep)["row"].tolist()
        assert drop_repeated(rows, keep=keep)["row"].tolist() == expected


def test_no_repeated_id_keeps_the_frame_itself() -> None:
    rows = frame(["m1", "m2", None])
    assert unique_rows(rows["id"]) is None
    assert drop_repeated(rows) is rows


def test_missing_ids_count_as_one_id() -> None:
    assert unique_rows(pd.Series([None, "m1", None], dtype="string")).tolist() == [
        True,
        True,
        False,
    ]


def test_empty_frame() -> None:
    rows = frame([])
    assert drop_repeated(rows) is rows
