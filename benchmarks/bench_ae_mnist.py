"""Training throughput of the MNIST autoencoders: Adam's update kernel (foreach vs fused) and bf16 autocast.

Prints images/s of the real training step (`ae_mnist.make_step`: scale, noise for the denoiser, forward,
BCE, backward, Adam) on random 28x28 batches, for each variant under its params. For MLPs this small the
optimizer's update is a third of a step, so the fused Adam kernel is what pays; bf16 barely does.
The CPU is shared, so run it when the machine is quiet and read the numbers as ratios.

Measured on the 2-core Intel Xeon (AVX-512, AMX) of the committed run, 200 steps of batch 128, images/s
with Adam foreach fp32 / foreach bf16 / fused fp32 / fused bf16: base 20,246 / 21,795 / 27,570 / 30,155;
denoise 19,065 / 23,517 / 23,474 / 27,434; l2 15,489 / 15,763 / 27,911 / 30,456; wide 19,353 / 22,061 /
27,851 / 29,422. The pipeline trains with the last (fused, bf16 where `amp: auto` finds bf16 units).
On the 2-core AMD EPYC (Zen 4) of the committed run, `--variants base --batch-sizes 128 256`, images/s in
the same four modes: batch 128 12,505 / 16,830 / 15,508 / 16,278; batch 256 16,420 / 22,483 / 15,452 /
21,507, so the pipeline trains the 2-D autoencoders at batch 256 (fused, bf16: 1.3x).
Usage: python benchmarks/bench_ae_mnist.py [--steps 200] [--variants base denoise l2 wide] [--batch-sizes 128 256]
"""

from __future__ import annotations

import argparse

import _timing
import torch

from latentlab.studies import ae_mnist
from latentlab.runtime import params
from latentlab.runtime.device import cpu_has_bf16
from latentlab.models.mlp_autoencoder import MLPAutoencoder


def images_per_s(cfg: dict, fused: bool, amp: bool, steps: int) -> float:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = MLPAutoencoder(cfg["hidden"], cfg["bottleneck"], activation=cfg["activation"])
    if fused:
        opt = ae_mnist.make_optimizer(model, cfg, device)
    else:
        opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    step = ae_mnist.make_step(cfg["noise_factor"], 0)
    batch = (torch.randint(0, 256, (cfg["batch_size"], 28, 28), dtype=torch.uint8),)
    return _timing.images_per_s(_timing.training_step(model, opt, step, batch, amp), cfg["batch_size"], steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--variants", nargs="+", default=["base", "denoise", "l2", "wide"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="batch sizes to compare (default: each variant's params)")
    args = ap.parse_args()
    variants = params.load()["ae_mnist"]["variants"]
    modes = [(f"Adam {'fused' if fused else 'foreach'}, {'bf16' if amp else 'fp32'}", fused, amp)
             for fused in (False, True) for amp in (False, True) if cpu_has_bf16() or not amp]
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 units: {cpu_has_bf16()}")
    runs = [(name, dict(variants[name], batch_size=size))
            for name in args.variants for size in args.batch_sizes or [variants[name]["batch_size"]]]
    rows = {f"{name} (batch {cfg['batch_size']})": [images_per_s(cfg, fused, amp, args.steps) for _, fused, amp in modes]
            for name, cfg in runs}
    _timing.print_table("variant", rows, [label for label, _, _ in modes])


if __name__ == "__main__":
    main()
