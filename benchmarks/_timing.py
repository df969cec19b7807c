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


def training_step(model, optimizer, step, batch, amp: bool):
    """One real training step on the CPU as `training.fit` takes it: the study's step under autocast, then the update."""
    import torch

    from latentlab.runtime.device import autocast

    device = torch.device("cpu")
    model.train()

    def one():
        with autocast(device, amp):
            loss, _ = step(model, batch, True)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return one


def print_table(first: str, rows: dict[str, list[float]], labels: list[str]) -> None:
    """A markdown table of images/s per row and mode, each relative to the row's first mode."""
    print(f"| {first} | " + " | ".join(labels) + " |")
    print("|---|" + "---|" * len(labels))
    for name, rates in rows.items():
        print(f"| {name} | " + " | ".join(f"{r:,.0f} images/s ({r / rates[0]:.2f}x)" for r in rates) + " |", flush=True)
