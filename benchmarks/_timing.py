"""Timing side by side: torch threads, device sync, variants timed interleaved (A, B, A, B, ...) after a warm-up, and
the median with the min-max spread that the results report."""

import os
import statistics
import time

import torch


def set_threads(threads: int | None) -> None:
    """Pin torch's intra-op threads (and the children's, via OMP_NUM_THREADS). On an oversubscribed CPU one thread
    per process is much faster than two: OpenMP barriers wait for a thread the scheduler has descheduled."""
    if threads:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def interleaved(variants: dict, repeats: int, warmup: int = 1, device: str = "cpu") -> dict[str, list[float]]:
    """Time each callable `repeats` times, interleaved (A, B, A, B, ...) after `warmup` untimed calls each.

    Returns the list of seconds per variant; report the median.
    """
    for _ in range(warmup):
        for fn in variants.values():
            fn()
    sync(device)
    times = {name: [] for name in variants}
    for i in range(repeats):
        # alternate the order each round so neither variant always runs right after the other's cache effects
        names = list(variants) if i % 2 == 0 else list(reversed(variants))
        for name in names:
            sync(device)
            t0 = time.perf_counter()
            variants[name]()
            sync(device)
            times[name].append(time.perf_counter() - t0)
    return times


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def spread(xs: list[float]) -> str:
    """min-max of the repeats, in the median's unit, to show the noise next to it."""
    return f"[{min(xs):.3f}-{max(xs):.3f}]" if len(xs) > 1 else ""
