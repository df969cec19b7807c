"""Our t-SNE vs openTSNE vs scikit-learn's Barnes-Hut at n = 2,000, 10,000 and 70,000, in one run.

Input: Fashion-MNIST pixels scaled to [0, 1], reduced to 50 principal components (ours, fitted on
the n images): n = 2,000 is the reduce stage's class-balanced test sample, 10,000 the test set,
70,000 train + test. Every implementation gets perplexity 30, PCA initialisation, seed 0 and 1,000
iterations, the first 250 with early exaggeration 12 (openTSNE: early_exaggeration_iter=250,
n_iter=750; n_jobs=2, its neighbours and gradient method its own `auto` choice). Times are wall
clock for the whole fit, neighbours and affinities included. KL divergences are all computed the
same way, exactly, from one P (ours: exact neighbours, 3·perplexity per point). scikit-learn runs
only up to --sklearn-max points.
Bars: at 70,000 points ours at least 1.5x as fast as openTSNE (time ratio <= 0.667) at a KL ratio <= 1.01;
at 2,000 and 10,000 points no slower than openTSNE or scikit-learn.
openTSNE is a benchmark dependency only: pip install -r benchmarks/requirements.txt.
Usage: python benchmarks/bench_tsne.py [--sizes 2000 10000 70000] [--sklearn-max 10000]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from latentlab.studies import activations
from latentlab.data import datasets
from latentlab.algorithms import pca, tsne
from latentlab.runtime import reproducible


def dataset(n: int) -> np.ndarray:
    split = datasets.load_prepared("fashion_mnist_28")
    if n == 2000:
        images = split["x_test"][activations.balanced_sample(split["y_test"], 200, seed=0)]
    elif n <= len(split["x_test"]):
        images = split["x_test"][:n]
    else:
        images = np.concatenate([split["x_train"], split["x_test"]])[:n]
    X = images.reshape(len(images), -1).astype(np.float32) / 255.0
    return pca.PCA(50).fit_transform(X).astype(np.float32)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    reproducible.ensure()  # the stages' pinned OpenBLAS kernels, whatever loaded NumPy first
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2000, 10000, 70000])
    ap.add_argument("--sklearn-max", type=int, default=10000)
    args = ap.parse_args()
    import openTSNE
    from sklearn.manifold import TSNE as SkTSNE

    rows = []
    for n in args.sizes:
        X = dataset(n)
        ours, t_ours = timed(lambda: tsne.TSNE(2, perplexity=30.0, init="pca", random_state=0, max_iter=1000).fit(X))
        P = ours.P_
        kl_ours = tsne.kl_divergence(P, ours.embedding_)
        print(f"n={n}: ours ({ours.method_}) {t_ours:.1f} s, KL {kl_ours:.4f}", flush=True)
        theirs, t_open = timed(lambda: np.asarray(openTSNE.TSNE(
            perplexity=30, initialization="pca", early_exaggeration=12, early_exaggeration_iter=250, n_iter=750,
            n_jobs=2, random_state=0).fit(X)))
        kl_open = tsne.kl_divergence(P, theirs)
        print(f"n={n}: openTSNE {t_open:.1f} s, KL {kl_open:.4f}", flush=True)
        t_sk = kl_sk = None
        if n <= args.sklearn_max:
            sk, t_sk = timed(lambda: SkTSNE(2, perplexity=30.0, init="pca", random_state=0, max_iter=1000,
                                            method="barnes_hut").fit(X))
            kl_sk = tsne.kl_divergence(P, sk.embedding_)
            print(f"n={n}: scikit-learn Barnes-Hut {t_sk:.1f} s, KL {kl_sk:.4f}", flush=True)
        rows.append((n, ours.method_, t_ours, kl_ours, t_open, kl_open, t_sk, kl_sk))

    print("\n| n | ours | openTSNE 1.0.4, n_jobs=2 | scikit-learn Barnes-Hut | time ours / openTSNE "
          "(bar: <= 0.667 at 70,000, else <= 1) | KL ours / openTSNE (bar <= 1.01 at 70,000) |")
    print("|---|---|---|---|---|---|")
    for n, method, t_ours, kl_ours, t_open, kl_open, t_sk, kl_sk in rows:
        sk = f"{t_sk:.1f} s, KL {kl_sk:.3f}" if t_sk is not None else "not run"
        print(f"| {n:,} | {t_ours:.1f} s, KL {kl_ours:.3f} ({method}) | {t_open:.1f} s, KL {kl_open:.3f} | {sk} "
              f"| {t_ours / t_open:.2f} | {kl_ours / kl_open:.3f} |")


if __name__ == "__main__":
    main()
