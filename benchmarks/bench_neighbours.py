"""The exact k-nearest-neighbour search behind the 70,000-point t-SNE, with three ways of picking each
block's k smallest distances: `tsne._k_smallest` (what `tsne.nearest_neighbours` uses), `torch.topk` and
`np.argpartition`.

Input as in the `tsne_full` stage: all 70,000 Fashion-MNIST images (train + test), pixels in [0, 1],
reduced to 50 principal components; k = 91 (3 x perplexity 30 + 1). Each search is
`tsne.nearest_neighbours` itself, the same blocks of |x_j|² − 2·x_i·x_j on two threads with one BLAS
thread each, with only its pick swapped, so the times differ by the pick alone. The table gives each
search's seconds (and their ratio to ours), the share of points whose neighbour sets are ours with
`np.argpartition`, and whether `torch.topk`'s neighbours and distances are ours byte for byte.
Usage: python benchmarks/bench_neighbours.py [--n 70000] [--k 91]
"""

from __future__ import annotations

import argparse
import time
from unittest import mock

import numpy as np

from latentlab.data import datasets
from latentlab.algorithms import pca, tsne
from latentlab.runtime import reproducible


def by_argpartition(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    found = np.argpartition(D, k - 1, axis=1)[:, :k]
    return found, np.take_along_axis(D, found, 1)


def main() -> None:
    reproducible.ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--k", type=int, default=91)
    args = ap.parse_args()
    import torch

    torch.set_num_threads(1)  # one thread per block, as the stages run it
    split = datasets.load_prepared("fashion_mnist_28")
    images = np.concatenate([split["x_train"], split["x_test"]])[:args.n]
    X = pca.PCA(50).fit_transform(images.reshape(len(images), -1).astype(np.float32) / 255).astype(np.float32)
    picks = {"np.argpartition": by_argpartition, "torch.topk": tsne._topk, "tsne._k_smallest (ours)": tsne._k_smallest}
    seconds, found = {}, {}
    for name, pick in picks.items():
        with mock.patch.object(tsne, "_k_smallest", pick):
            start = time.perf_counter()
            found[name] = tsne.nearest_neighbours(X, args.k)
            seconds[name] = time.perf_counter() - start
    ours, ours_seconds = found["tsne._k_smallest (ours)"], seconds["tsne._k_smallest (ours)"]
    same = (np.sort(found["np.argpartition"][0], 1) == np.sort(ours[0], 1)).all(1).mean()
    same_bytes = all(a.tobytes() == b.tobytes() for a, b in zip(found["torch.topk"], ours))
    print(f"| n = {args.n:,}, k = {args.k} | " + " | ".join(picks) + " |\n|---|---|---|---|")
    print("| seconds | " + " | ".join(f"{t:.1f} ({t / ours_seconds:.2f}x)" for t in seconds.values()) + " |")
    print(f"| neighbours as ours | the same sets for {same:.4%} of points | "
          f"{'the same bytes' if same_bytes else 'other bytes'} | |")


if __name__ == "__main__":
    main()
