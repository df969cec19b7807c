"""Images/s of latentlab.models.training.fit vs a bare PyTorch loop over the same in-memory tensors.

Same model (a classifier from params), same batches, same optimizer; fit adds seeded shuffling, tqdm,
per-batch metric sums and the NaN check. Bar: fit >= 0.9x the bare loop.
Usage: python benchmarks/bench_train_loop.py [--model lenet] [--images 12800] [--repeats 3]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from latentlab.studies import classifiers as study
from latentlab.data import datasets
from latentlab.models import training
from latentlab.models import classifiers


def setup(name, n):
    split = datasets.load_prepared("fashion_mnist_32")
    x = torch.from_numpy(split["x_train"][:n]).unsqueeze(1)
    y = torch.from_numpy(split["y_train"][:n])
    torch.manual_seed(0)
    model = classifiers.build(name).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return model, opt, x, y


def bare(name, n, batch):
    model, opt, x, y = setup(name, n)
    model.train()
    order = torch.randperm(n, generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, n, batch):
        idx = order[i:i + batch]
        xb = classifiers.normalize(x[idx]).contiguous(memory_format=torch.channels_last)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n / (time.perf_counter() - start)


def with_fit(name, n, batch):
    model, opt, x, y = setup(name, n)
    cfg = {"augment": {"crop_padding": 0, "hflip": False}, "label_smoothing": 0.0}
    history = training.fit(model, study.make_step(cfg, 0, True), (x, y), None, epochs=1, optimizer=opt,
                           batch_size=batch, device=torch.device("cpu"), seed=0, name="bench")
    return history.images_per_s


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="lenet")
    ap.add_argument("--images", type=int, default=12800)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    b, f = [], []
    for _ in range(args.repeats):  # interleaved, so drift in machine load hits both
        b.append(bare(args.model, args.images, args.batch))
        f.append(with_fit(args.model, args.images, args.batch))
    print(f"{args.model}: bare loop {max(b):.0f} images/s, training.fit {max(f):.0f} images/s, "
          f"ratio {max(f) / max(b):.2f} (bar >= 0.9: {'met' if max(f) >= 0.9 * max(b) else 'NOT met'})")


if __name__ == "__main__":
    main()
