"""Chunks built ahead on threads come back in order, errors surface where they belong,
and a consumer that stops early leaves nothing running."""

from __future__ import annotations

import time

import pytest
from connect_sync.flows.ahead import built_ahead


@pytest.mark.parametrize("workers", [0, 1, 2, 4])
def test_results_come_in_order(workers: int) -> None:
    def build(n: int) -> int:
        time.sleep(0.001 * (n % 3))  # later parts often finish first
        return n * n

    assert list(built_ahead(build, range(20), workers)) == [n * n for n in range(20)]


def test_at_most_workers_parts_are_built_ahead() -> None:
    """Parts are taken from the iterable only as results are asked for: `workers` ahead of
    the one handed out, never the whole iterable (no timing involved)."""
    pulled: list[int] = []

    def parts():
        for n in range(100):
            pulled.append(n)
            yield n

    results = built_ahead(lambda n: n, parts(), workers=2)
    assert next(results) == 0
    assert pulled == [0, 1, 2]  # the one handed out, and two building
    assert next(results) == 1
    assert pulled == [0, 1, 2, 3]
    results.close()


def test_an_error_surfaces_at_its_part() -> None:
    def build(n: int) -> int:
        if n == 3:
            raise ValueError("bad part")
        return n

    seen = []
    with pytest.raises(ValueError, match="bad part"):
        for value in built_ahead(build, range(10), workers=2):
            seen.append(value)
    assert seen == [0, 1, 2]
