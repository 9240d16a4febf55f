"""Time slices of a message window (transforms.slices) and the latest copy of a message
(transforms.messages.latest_loaded)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import numpy as np
import pandas as pd
import pyarrow as pa
from connect_sync.transforms.messages import latest_loaded
from connect_sync.transforms.slices import SeenMessages, time_slices
from hypothesis import given
from hypothesis import strategies as st

T0 = datetime(2026, 11, 1, tzinfo=UTC)

hour_counts = st.dictionaries(
    st.one_of(st.none(), st.integers(0, 200)), st.integers(1, 40), min_size=1, max_size=30
)


def _hours(counts: dict[int | None, int]) -> pd.DataFrame:
    keys = list(counts)
    stamps = [None if k is None else T0 + timedelta(hours=k) for k in keys]
    hours = pa.array(stamps, pa.timestamp("us", tz="UTC"))
    return pd.DataFrame(
        {"hour": pd.arrays.ArrowExtensionArray(hours), "n_rows": [counts[k] for k in keys]}
    )


def _slice_of(hour: int | None, slices) -> int:
    stamp = None if hour is None else T0 + timedelta(hours=hour)
    found = [
        k
        for k, s in enumerate(slices)
        if (stamp is None and s.lo is None)
        or (
            stamp is not None and (s.lo is None or stamp >= s.lo) and (s.hi is None or stamp < s.hi)
        )
    ]
    assert len(found) == 1, (hour, slices)
    return found[0]


@given(counts=hour_counts, per_slice=st.integers(1, 120))
def test_every_hour_is_in_one_slice_in_time_order(counts: dict, per_slice: int) -> None:
    slices = time_slices(_hours(counts).sample(frac=1, random_state=1), per_slice)
    assert slices[0].lo is None and slices[-1].hi is None
    for before, after in pairwise(slices):
        assert before.hi == after.lo and before.hi is not None
    assert sum(s.rows for s in slices) == sum(counts.values())
    timed = sorted(k for k in counts if k is not None)
    where = [_slice_of(k, slices) for k in timed]
    assert where == sorted(where)  # later hours never in an earlier slice
    if None in counts:
        assert _slice_of(None, slices) == 0  # rows without a time sort first
    for k, part in enumerate(slices):  # a slice holds less than per_slice plus its last hour
        groups = [None] if k == 0 and None in counts else []
        groups += [h for h in timed if where[timed.index(h)] == k]
        held = sum(counts[h] for h in groups)
        assert held == part.rows
        if len(slices) > 1:
            assert groups and held - counts[groups[-1]] < per_slice


def test_a_window_that_fits_is_one_open_slice() -> None:
    (whole,) = time_slices(_hours({0: 3, 5: 4, None: 1}), per_slice=8)
    assert (whole.lo, whole.hi, whole.rows) == (None, None, 8)
    assert whole.params["from_start"] and whole.params["to_end"]


def test_naive_hours_are_utc() -> None:
    hours = pd.DataFrame(
        {"hour": [datetime(2026, 1, 1, 1), datetime(2026, 1, 1, 2)], "n_rows": [5, 5]}
    )
    first, second = time_slices(hours, per_slice=5)
    assert first.hi == datetime(2026, 1, 1, 2, tzinfo=UTC) == second.lo


def test_seen_messages_hit_only_what_was_added() -> None:
    seen = SeenMessages()
    assert not seen.hits(pd.Series(["m1"])).any()
    seen.add(pd.Series(["m1", "m2"], dtype="string[pyarrow]"))
    seen.add(pd.Series(["m9"]))
    assert seen.hits(pd.Series(["m0", "m2", "m9", "m3"])).tolist() == [False, True, True, False]
    assert len(seen) == 3


def test_the_copy_loaded_last_wins_whatever_the_read_order() -> None:
    rows = pd.DataFrame(
        {
            "id": ["a", "b", "a", "c", "b"],
            "plan": ["new", "one", "old", "only", "two"],
            "uuid_ts": pd.to_datetime(
                ["2026-01-02", "2026-01-01", "2026-01-01", "2026-01-01", "2026-01-01"], utc=True
            ),
        }
    )
    kept = latest_loaded(rows)
    assert kept["plan"].tolist() == ["new", "only", "two"]  # ties: the last read
    assert latest_loaded(rows.iloc[::-1])["plan"].tolist() == ["only", "one", "new"]
    assert latest_loaded(rows.drop_duplicates("id")) is not None
    unique = rows.drop_duplicates("id")
    assert latest_loaded(unique) is unique
    assert latest_loaded(rows.drop(columns="uuid_ts"))["plan"].tolist() == ["old", "only", "two"]
    assert np.array_equal(latest_loaded(rows.iloc[:0]).columns, rows.columns)
