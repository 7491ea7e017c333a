"""Timing helper shared by the bench/*.py scripts."""
import statistics
import time


def median_seconds(fn, reps):
    """Median wall time of `reps` calls of fn() after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
