"""Comparing our PCA and t-SNE with scikit-learn's on layer activations: timing, agreement, class separation."""

from __future__ import annotations

import time

import numpy as np
from scipy.spatial import procrustes

from . import reduce, tsne


def knn_accuracy(Y: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN majority vote inside the embedding: how well it separates the classes.

    Neighbours by a k-d tree, exact and without an n x n matrix, so it scores 70,000 points as well as 2,000."""
    from scipy.spatial import cKDTree

    _, found = cKDTree(Y).query(Y, k + 1)
    self_last = np.argsort(found == np.arange(len(Y))[:, None], axis=1, kind="stable")  # a duplicate may come first
    neighbours = np.take_along_axis(found, self_last, 1)[:, :k]
    votes = np.zeros((len(Y), labels.max() + 1), int)
    np.add.at(votes, (np.repeat(np.arange(len(Y)), k), labels[neighbours].ravel()), 1)
    return float((votes.argmax(1) == labels).mean())


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def compare_layer(X: np.ndarray, labels: np.ndarray, cfg: dict) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every (method, implementation, dims) on one layer's activations: metric rows and the embeddings."""
    from sklearn.decomposition import PCA as SkPCA
    from sklearn.manifold import TSNE as SkTSNE
    from sklearn.manifold import trustworthiness

    X = X.astype(np.float32)
    rows, embeddings = [], {}
    tsne_input = X
    if cfg["tsne_pca_dims"] and X.shape[1] > cfg["tsne_pca_dims"]:  # the usual PCA step first, shared by both
        tsne_input = reduce.PCA(cfg["tsne_pca_dims"], random_state=cfg["seed"]).fit_transform(X).astype(np.float32)
    for dims in cfg["dims"]:
        ours, t_ours = _timed(lambda: reduce.PCA(dims, random_state=cfg["seed"]).fit(X))
        theirs, t_theirs = _timed(lambda: SkPCA(dims, random_state=cfg["seed"]).fit(X))
        Y_ours, Y_theirs = ours.transform(X), theirs.transform(X)
        evr_gap = float(np.abs(ours.explained_variance_ratio_ - theirs.explained_variance_ratio_).max())
        disparity = float(procrustes(Y_theirs, Y_ours)[2])
        for impl, Y, seconds, model in (("ours", Y_ours, t_ours, ours), ("sklearn", Y_theirs, t_theirs, theirs)):
            rows.append({"method": "pca", "impl": impl, "dims": dims, "seconds": seconds,
                         "explained_variance": float(model.explained_variance_ratio_.sum()),
                         "evr_max_gap": evr_gap, "procrustes": disparity})
            embeddings[f"pca_{impl}_{dims}d"] = Y
        common = dict(n_components=dims, perplexity=cfg["perplexity"], init="pca", random_state=cfg["seed"],
                      max_iter=cfg["tsne_iter"])
        ours_t, t_ours = _timed(lambda: tsne.TSNE(**common).fit(tsne_input))
        theirs_t, t_theirs = _timed(lambda: SkTSNE(**common, method="barnes_hut").fit(tsne_input))
        disparity = float(procrustes(theirs_t.embedding_, ours_t.embedding_)[2])
        for impl, model, seconds in (("ours", ours_t, t_ours), ("sklearn", theirs_t, t_theirs)):
            rows.append({"method": "tsne", "impl": impl, "dims": dims, "seconds": seconds,
                         "kl_divergence": float(model.kl_divergence_),  # as each reports it (BH: approximate)
                         "kl_exact": tsne.kl_divergence(ours_t.P_, model.embedding_),  # same P for both
                         "procrustes": disparity})
            embeddings[f"tsne_{impl}_{dims}d"] = model.embedding_
    distances = np.sqrt(tsne.squared_distances(X))  # the input space's ranks, computed once per layer
    np.fill_diagonal(distances, 0.0)
    for row in rows:
        Y = embeddings[f"{row['method']}_{row['impl']}_{row['dims']}d"]
        row["trustworthiness"] = float(trustworthiness(distances, Y, n_neighbors=5, metric="precomputed"))
        row["knn5_acc"] = knn_accuracy(Y, labels)
    return rows, embeddings
