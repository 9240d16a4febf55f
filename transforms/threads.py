"""Independent column work on a few threads: Arrow compute, numpy and the compiled JSON
loops release the GIL, so two columns (or two independent steps) run at once."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")
U = TypeVar("U")

#: At most this many threads: the work is memory-bound, more rarely pays.
MAX_WORKERS = 4


def workers() -> int:
    """Threads to use: the cores this process may run on, at most MAX_WORKERS."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_WORKERS))


def parallel_map(function: Callable[[T], U], items: Iterable[T]) -> list[U]:
    """`[function(item) for item in items]`, the items spread over `workers()` threads."""
    items = list(items)
    count = min(workers(), len(items))
    if count <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(count, thread_name_prefix="columns") as pool:
        return list(pool.map(function, items))


def in_parallel(*calls: Callable[[], T]) -> list[T]:
    """The results of the calls, made on `workers()` threads."""
    return parallel_map(lambda call: call(), calls)
