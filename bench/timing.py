"""Timing helper shared by the Python benchmarks."""
import statistics
import time


def median_seconds(fn, reps: int) -> float:
    """Median wall time of fn() over reps calls, after one warm-up call."""
    fn()
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)
