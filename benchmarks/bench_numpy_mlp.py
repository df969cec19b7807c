"""One epoch of the [784, 512, 128, 10] MLP, batch 64: our NumPy network vs the same MLP in PyTorch on the CPU.

Both run back to back in one process on the same data (Fashion-MNIST 28x28 from data/prepared), so a
busy machine slows both alike. Bar: ours takes <= 2x PyTorch's time per epoch.
Usage: python benchmarks/bench_numpy_mlp.py [--epochs 1]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from latentlab.data import datasets
from latentlab.studies import numpy_mlp
from latentlab.algorithms import numpy_nn
from latentlab.runtime import reproducible


def numpy_epoch(x, y, batch):
    net = numpy_nn.Net.mlp([784, 512, 128, 10], seed=0)
    opt = numpy_nn.SGD(net.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    order = np.random.default_rng(0).permutation(len(x))
    start = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"):  # as numpy_mlp.fit runs it
        for i in range(0, len(x), batch):
            idx = order[i:i + batch]
            _, grad = numpy_nn.softmax_cross_entropy(net.forward(x[idx]), y[idx])
            net.zero_grad()
            net.backward(grad)
            opt.step()
    return time.perf_counter() - start


def torch_epoch(x, y, batch):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(784, 512), torch.nn.ReLU(), torch.nn.Linear(512, 128), torch.nn.ReLU(),
                                torch.nn.Linear(128, 10))
    opt = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    start = time.perf_counter()
    for i in range(0, len(x), batch):
        idx = order[i:i + batch]
        loss = torch.nn.functional.cross_entropy(model(xt[idx]), yt[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def main() -> None:
    reproducible.ensure()  # the stages' pinned OpenBLAS kernels, whatever loaded NumPy first
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch", type=int, default=64)
    args = ap.parse_args()
    split = datasets.load_prepared("fashion_mnist_28")
    x, y = numpy_mlp.flatten_normalize(split["x_train"]), split["y_train"]
    ours = min(numpy_epoch(x, y, args.batch) for _ in range(args.epochs))
    theirs = min(torch_epoch(x, y, args.batch) for _ in range(args.epochs))
    print(f"numpy MLP epoch: {ours:.2f} s   pytorch MLP epoch: {theirs:.2f} s   ratio {ours / theirs:.2f}x "
          f"(bar: <= 2x, {'met' if ours <= 2 * theirs else 'NOT met'}; torch threads: {torch.get_num_threads()})")


if __name__ == "__main__":
    main()
