"""The exact k-nearest-neighbour search behind the 70,000-point t-SNE: `tsne.nearest_neighbours` against
selecting each block's k smallest with `np.argpartition`.

Input as in the `tsne_full` stage: all 70,000 Fashion-MNIST images (train + test), pixels in [0, 1],
reduced to 50 principal components; k = 91 (3 x perplexity 30 + 1). The argpartition search is the
same blocks of exact squared distances (NumPy, pinned OpenBLAS), each block's k smallest picked by
`np.argpartition` on two threads; `tsne.nearest_neighbours` computes |x_j|² − 2·x_i·x_j in one matrix
product per block and picks with `torch.topk`. Both are exact up to float32 rounding: the table gives
the share of points whose neighbour sets are identical.
Usage: python benchmarks/bench_neighbours.py [--n 70000] [--k 91]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from threadpoolctl import threadpool_limits

from latentlab.data import datasets
from latentlab.algorithms import pca, tsne
from latentlab.runtime import reproducible


def by_argpartition(X: np.ndarray, k: int) -> np.ndarray:
    n, sq = len(X), (X * X).sum(1)
    found = np.empty((n, k), np.intp)

    def search(block):
        s, e = block
        D = X[s:e] @ X.T
        D *= -2
        D += sq[s:e, None]
        D += sq[None, :]
        D[np.arange(e - s), np.arange(s, e)] = np.inf
        found[s:e] = np.argpartition(D, k, axis=1)[:, :k]

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        list(pool.map(search, tsne._row_blocks(n, n)))
    return found


def main() -> None:
    reproducible.ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--k", type=int, default=91)
    args = ap.parse_args()
    split = datasets.load_prepared("fashion_mnist_28")
    images = np.concatenate([split["x_train"], split["x_test"]])[:args.n]
    X = pca.PCA(50).fit_transform(images.reshape(len(images), -1).astype(np.float32) / 255).astype(np.float32)
    start = time.perf_counter()
    old = by_argpartition(X, args.k)
    t_old = time.perf_counter() - start
    start = time.perf_counter()
    new, _ = tsne.nearest_neighbours(X, args.k)
    t_new = time.perf_counter() - start
    same = (np.sort(old, 1) == np.sort(new, 1)).all(1).mean()
    print(f"| n = {args.n:,}, k = {args.k} | argpartition | tsne.nearest_neighbours |\n|---|---|---|")
    print(f"| seconds | {t_old:.1f} | {t_new:.1f} ({t_old / t_new:.1f}x) |")
    print(f"| identical neighbour sets | | {same:.4%} of points |")


if __name__ == "__main__":
    main()
