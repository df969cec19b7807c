"""Training throughput of the 64x64 dog autoencoder: fp32 vs channels_last vs channels_last + bf16 autocast.

Prints images/s for full training steps (forward, MSE, backward, Adam) on random 64x64 batches, the
work of one step of `ae_dogs.fit`. The CPU is shared, so run it when the machine is quiet and read the
numbers as ratios. Usage: python benchmarks/bench_ae_dogs.py [--steps 20] [--batch 64] [--widths 32 64 128]
"""

from __future__ import annotations

import argparse
import time

import torch

from latentlab.device import autocast
from latentlab.models.conv_autoencoder import ConvAutoencoder


def images_per_s(channels_last: bool, amp: bool, widths: list[int], batch: int, steps: int,
                 noise_std: float = 0.0) -> float:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = ConvAutoencoder(widths)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    x = torch.randint(0, 256, (batch, 3, 64, 64), dtype=torch.uint8)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model.train()

    def one():
        with autocast(device, amp):
            xb = x.float().div(255).contiguous(memory_format=layout)
            recon = model(xb, noise_std)
            loss = (recon.float() - xb).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):  # warm-up: oneDNN picks its kernels on the first calls
        one()
    start = time.perf_counter()
    for _ in range(steps):
        one()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--widths", type=int, nargs=3, default=[32, 64, 128])
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, widths {args.widths}")
    base = None
    for label, cl, amp in (("fp32, contiguous", False, False), ("fp32, channels_last", True, False),
                           ("channels_last + bf16 autocast", True, True)):
        rate = images_per_s(cl, amp, args.widths, args.batch, args.steps)
        base = base or rate
        print(f"{label:32s} {rate:7.1f} images/s  ({rate / base:.2f}x)")


if __name__ == "__main__":
    main()
