"""The exact k-nearest-neighbour search behind the 70,000-point t-SNE: `tsne.nearest_neighbours` against
picking each block's k smallest with `np.argpartition` or with `torch.topk`.

Input as in the `tsne_full` stage: all 70,000 Fashion-MNIST images (train + test), pixels in [0, 1],
reduced to 50 principal components; k = 91 (3 x perplexity 30 + 1). The argpartition search is
blocks of exact squared distances (NumPy, pinned OpenBLAS), each block's k smallest picked by
`np.argpartition`; the topk search is `tsne.nearest_neighbours`'s blocks (|x_j|² − 2·x_i·x_j in one
matrix product each), picked by `torch.topk`; `tsne.nearest_neighbours` picks them with
`tsne._k_smallest`. All three run on two threads, one BLAS thread each. All are exact up to float32
rounding: the table gives the share of points whose neighbour sets are those of
`tsne.nearest_neighbours`, and whether its neighbours and distances are the topk search's bytes.
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


def by_topk(X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """`tsne.nearest_neighbours`' blocks and distances, each block's k smallest picked by `torch.topk`."""
    import torch

    n, sq = len(X), (X * X).sum(1)
    left = np.hstack([X, np.ones((n, 1), np.float32)])
    right = np.ascontiguousarray(np.vstack([-2 * X.T, sq[None, :]]))
    found, distances = np.empty((n, k), np.intp), np.empty((n, k))

    def search(block):
        s, e = block
        D = left[s:e] @ right
        D[np.arange(e - s), np.arange(s, e)] = np.inf
        partial, chosen = torch.topk(torch.from_numpy(D), k, dim=1, largest=False, sorted=False)
        found[s:e] = chosen.numpy()
        distances[s:e] = np.maximum(partial.numpy().astype(np.float64) + sq[s:e, None], 0)

    torch.set_num_threads(1)
    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        list(pool.map(search, tsne._row_blocks(n, max(1, n // 8))))
    return found, distances


def main() -> None:
    reproducible.ensure()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=70000)
    ap.add_argument("--k", type=int, default=91)
    args = ap.parse_args()
    split = datasets.load_prepared("fashion_mnist_28")
    images = np.concatenate([split["x_train"], split["x_test"]])[:args.n]
    X = pca.PCA(50).fit_transform(images.reshape(len(images), -1).astype(np.float32) / 255).astype(np.float32)
    searches = {"argpartition": lambda: (by_argpartition(X, args.k), None), "torch.topk": lambda: by_topk(X, args.k),
                "tsne.nearest_neighbours": lambda: tsne.nearest_neighbours(X, args.k)}
    seconds, found = {}, {}
    for name, search in searches.items():
        start = time.perf_counter()
        found[name] = search()
        seconds[name] = time.perf_counter() - start
    (ours, distances), ours_seconds = found["tsne.nearest_neighbours"], seconds["tsne.nearest_neighbours"]
    same = (np.sort(found["argpartition"][0], 1) == np.sort(ours, 1)).all(1).mean()
    same_bytes = all(a.tobytes() == b.tobytes() for a, b in zip(found["torch.topk"], (ours, distances)))
    print(f"| n = {args.n:,}, k = {args.k} | argpartition | torch.topk | tsne.nearest_neighbours |\n|---|---|---|---|")
    print("| seconds | " + " | ".join(f"{t:.1f} ({t / ours_seconds:.2f}x)" for t in seconds.values()) + " |")
    print(f"| neighbours as tsne.nearest_neighbours' | the same sets for {same:.4%} of points | "
          f"{'the same bytes' if same_bytes else 'other bytes'} | |")


if __name__ == "__main__":
    main()
