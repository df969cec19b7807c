"""Training throughput of the four classifiers: fp32 vs channels_last vs channels_last + bf16 autocast.

Prints images/s of the real training step (`classifiers.make_step`: normalise, crop-and-flip, forward,
cross-entropy, backward, the params' optimizer) on random 32x32 batches of each model's params batch
size. The pipeline trains channels_last, with bf16 autocast (`amp: auto`) where the CPU has bf16 units
(`device.cpu_has_bf16`) for MyNet-BN and FashionNet, in fp32 for LeNet and MyNet (`amp: false`).
The CPU is shared, so run it when the machine is quiet and read the numbers as ratios.
On the 2-core AMD EPYC (Zen 4) of the committed run, `--models fashionnet --batch-sizes 128 256`, 40 steps:
batch 128 3,301 / 4,363 / 6,162 images/s, batch 256 3,011 / 3,927 / 6,345: batch 256 buys FashionNet no
per-image speed, only the fewer epochs it needs to reach its bar (24 instead of 30).
Usage: python benchmarks/bench_classifiers.py [--steps 30] [--models lenet mynet mynet_bn fashionnet]
       [--batch-sizes 128 256]

Measured on the quiet 2-core Intel Xeon (AVX-512, AMX) of the committed run, 30 steps of batch 128,
images/s in fp32 contiguous / fp32 channels_last / channels_last + bf16: LeNet 17,139 / 23,418 / 26,860;
MyNet 20,747 / 25,771 / 24,937; MyNet-BN 3,004 / 3,620 / 6,496; FashionNet 3,689 / 5,183 / 8,042. So
bf16 makes the two conv-heavy nets 1.6-1.8x faster than channels_last alone and buys nothing for the
two small ones, where the step is not dominated by convolutions. In the pipeline, with bf16: MyNet-BN
5,535 images/s (0.9362 test accuracy, 12 epochs, 143 s), FashionNet 7,036 images/s (0.9372, 30 epochs,
280 s; 24 epochs gave 0.9345, short of its 0.935 bar).
"""

from __future__ import annotations

import argparse

import _timing
import torch

from latentlab.studies import classifiers as study
from latentlab.runtime import params
from latentlab.runtime.device import cpu_has_bf16
from latentlab.models import classifiers


def images_per_s(name: str, cfg: dict, channels_last: bool, amp: bool, steps: int) -> float:
    torch.manual_seed(0)
    model = classifiers.build(name)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    opt, _ = study.make_optimizer(model, cfg, batches_per_epoch=1)
    step = study.make_step(cfg, 0, channels_last)
    batch = (torch.randint(0, 256, (cfg["batch_size"], 1, 32, 32), dtype=torch.uint8),
             torch.randint(0, 10, (cfg["batch_size"],)))
    return _timing.images_per_s(_timing.training_step(model, opt, step, batch, amp), cfg["batch_size"], steps)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--models", nargs="+", default=["lenet", "mynet", "mynet_bn", "fashionnet"])
    ap.add_argument("--batch-sizes", type=int, nargs="+", help="batch sizes to compare (default: each model's params)")
    args = ap.parse_args()
    sections = params.load()["classifiers"]
    modes = [("fp32, contiguous", False, False), ("fp32, channels_last", True, False)]
    if cpu_has_bf16():
        modes.append(("channels_last + bf16 autocast", True, True))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, bf16 units: {cpu_has_bf16()}")
    runs = [(name, dict(sections[name], batch_size=size))
            for name in args.models for size in args.batch_sizes or [sections[name]["batch_size"]]]
    rows = {f"{name} (batch {cfg['batch_size']})": [images_per_s(name, cfg, cl, amp, args.steps) for _, cl, amp in modes]
            for name, cfg in runs}
    _timing.print_table("model", rows, [label for label, _, _ in modes])


if __name__ == "__main__":
    main()
