"""Our PCA and t-SNE vs scikit-learn's at n = 2,000, side by side in one run.

Input: 2,000 Fashion-MNIST test images (class-balanced), flattened; t-SNE gets their first 50 principal
components, as the reduce stage does. Same perplexity (30), init (pca), seed and iterations for both.
Bars: our PCA's explained-variance ratios within 1e-6 of scikit-learn's and <= 2x its time;
our t-SNE's KL <= 1.05x scikit-learn's and no slower than its Barnes-Hut.
Usage: python benchmarks/bench_reduce.py [--dims 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.decomposition import PCA as SkPCA
from sklearn.manifold import TSNE as SkTSNE

from latentlab.studies import activations
from latentlab.data import datasets
from latentlab.algorithms import pca, tsne
from latentlab.runtime import reproducible


def timed(fn, repeats=1):
    best, out = np.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return out, best


def main() -> None:
    reproducible.ensure()  # the stages' pinned OpenBLAS kernels, whatever loaded NumPy first
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dims", type=int, default=2)
    ap.add_argument("--n-per-class", type=int, default=200)
    args = ap.parse_args()
    split = datasets.load_prepared("fashion_mnist_28")
    idx = activations.balanced_sample(split["y_test"], args.n_per_class, seed=0)
    X = split["x_test"][idx].reshape(len(idx), -1).astype(np.float32) / 255.0

    ours, t_ours = timed(lambda: pca.PCA(args.dims).fit(X), repeats=5)
    theirs, t_theirs = timed(lambda: SkPCA(args.dims, random_state=0).fit(X), repeats=5)
    gap = np.abs(ours.explained_variance_ratio_ - theirs.explained_variance_ratio_).max()
    print(f"PCA n={len(X)} d={X.shape[1]}: ours {t_ours * 1000:.1f} ms, sklearn {t_theirs * 1000:.1f} ms "
          f"(ratio {t_ours / t_theirs:.2f}, bar <= 2), max |EVR gap| {gap:.1e} (bar <= 1e-6)")

    Xp = pca.PCA(50).fit_transform(X).astype(np.float32)
    common = dict(n_components=args.dims, perplexity=30.0, init="pca", random_state=0, max_iter=1000)
    ours_t, t_ours = timed(lambda: tsne.TSNE(**common).fit(Xp))
    bh, t_bh = timed(lambda: SkTSNE(**common, method="barnes_hut").fit(Xp))
    kl_bh = tsne.kl_divergence(ours_t.P_, bh.embedding_)
    print(f"t-SNE {args.dims}-D n={len(Xp)}: ours {t_ours:.1f} s (KL {ours_t.kl_divergence_:.4f}, {ours_t.n_iter_} it), "
          f"sklearn Barnes-Hut {t_bh:.1f} s (KL {bh.kl_divergence_:.4f} as it reports, {kl_bh:.4f} exact); "
          f"KL ratio {ours_t.kl_divergence_ / kl_bh:.3f} (bar <= 1.05), time ratio {t_ours / t_bh:.2f} (bar <= 1)")


if __name__ == "__main__":
    main()
