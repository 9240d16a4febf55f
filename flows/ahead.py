"""Build the next chunks while the current one is sent: results in order, a few ahead."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def built_ahead(build: Callable[[T], R], parts: Iterable[T], workers: int = 2) -> Iterator[R]:
    """`build(part)` of each part, in order, computed up to `workers` parts ahead on threads.

    The transforms spend their time in Arrow, numpy and compiled loops, which release the
    GIL, so the next chunk is built while the caller sends the current one. At most
    `workers + 1` results exist at a time; `workers=0` builds each part when it is asked
    for.
    """
    if workers <= 0:
        yield from map(build, parts)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="build") as pool:
        pending: deque[Future[R]] = deque()
        try:
            for part in parts:
                pending.append(pool.submit(build, part))
                if len(pending) > workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:  # stopped early (an error, or the consumer gave up): drop what is queued
            for future in pending:
                future.cancel()
