"""Shared by the throughput benchmarks: how many images a training step gets through per second."""

from __future__ import annotations

import time


def images_per_s(step, batch: int, steps: int, warmup: int = 3) -> float:
    """Run `step()` `warmup` times untimed (oneDNN picks its kernels on the first calls), then `steps` times."""
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch / (time.perf_counter() - start)
