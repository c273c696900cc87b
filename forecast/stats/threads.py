"""Independent blocks of NumPy work on a few threads (NumPy releases the GIL in its loops).

Callers split work so that each item's result depends on that item alone; the numbers then do
not depend on how many threads ran them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable

# The cores this process may use, at most four.
THREADS = max(1, min(4, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def map_threads[T, R](fn: Callable[[T], R], items: Iterable[T], threads: int | None = None) -> list[R]:
    """``[fn(x) for x in items]``, in order, on ``threads`` (default THREADS) threads when there
    is more than one item."""
    items = list(items)
    n = THREADS if threads is None else threads
    if len(items) < 2 or n < 2:
        return [fn(x) for x in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(fn, items))


__all__ = ["THREADS", "map_threads"]
