"""The benches' one way to time: the median of repeated calls, each after an optional reset (a cold cache)."""
from __future__ import annotations

import statistics
import time


def median_seconds(fn, repeats: int, before=None, warm_up: bool = False) -> float:
    """The median wall time of `repeats` calls of `fn`, `before()` run untimed ahead of each; with `warm_up`,
    one untimed call first (connections, compiled queries, imports)."""
    if warm_up:
        fn()
    times = []
    for _ in range(repeats):
        if before:
            before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
