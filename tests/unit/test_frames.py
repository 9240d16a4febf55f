"""How driver values come out of the readers (`warehouse.frames`), type by type."""

from __future__ import annotations

import ipaddress
import uuid
from decimal import Decimal

import pyarrow as pa
from connect_sync.warehouse.frames import MONEY, normalize_batch, rows_to_arrow


def test_db_api_values_arrow_has_no_type_for_become_text_or_uint64():
    batch = rows_to_arrow(
        ["big", "ip", "cash"],
        [(2**64 - 1, ipaddress.ip_address("10.0.0.1"), "$1,234.56"), (None, None, "-$0.50")],
        [None, None, MONEY],
    )
    assert batch.column(0).type == pa.uint64() and batch.column(0)[0].as_py() == 2**64 - 1
    assert batch.column(1).to_pylist() == ["10.0.0.1", None]
    assert batch.column(2).to_pylist() == [Decimal("1234.56"), Decimal("-0.50")]


def test_extension_types_become_text_and_nanoseconds_microseconds():
    ids = [uuid.UUID("6ba7b810-9dad-11d1-80b4-00c04fd430c8"), None]
    batch = pa.RecordBatch.from_arrays(
        [
            pa.array([u.bytes if u else None for u in ids], pa.uuid()),
            pa.array(['{"a":1}', None], pa.json_()),
            pa.array([1_704_067_200_123_456_789, None], pa.timestamp("ns")),
        ],
        names=["uid", "doc", "ns"],
    )
    out = normalize_batch(batch)
    assert out.column(0).to_pylist() == ["6ba7b810-9dad-11d1-80b4-00c04fd430c8", None]
    assert out.column(1).to_pylist() == ['{"a":1}', None]
    assert out.column(2).type == pa.timestamp("us", tz="UTC")
    assert out.column(2).cast(pa.int64()).to_pylist() == [1_704_067_200_123_456, None]
