"""The looking-inside study: our PCA and t-SNE against scikit-learn's on layer activations (timing, agreement,
class separation), and its figures: scatter grids coloured by class, 3-D views, 5-NN accuracy by layer."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from scipy.spatial import procrustes

from latentlab.algorithms import pca, tsne
from latentlab.algorithms.embedding_quality import (input_ranks, knn_accuracy, placed_knn_accuracy,  # noqa: F401
                                                    trustworthiness_from_ranks)


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _agreement(fits, pca: bool = False) -> dict[str, float]:
    """How far scikit-learn's result lies from ours (Procrustes disparity, and for PCA the largest gap in
    explained-variance ratios); NaN, an empty cell in the table, when only ours ran."""
    compared = len(fits) == 2
    out = {}
    if pca:
        gap = np.abs(fits[0][1].explained_variance_ratio_ - fits[1][1].explained_variance_ratio_).max() if compared else np.nan
        out["evr_max_gap"] = float(gap)
    out["procrustes"] = float(procrustes(fits[1][2], fits[0][2])[2]) if compared else np.nan
    return out


def compare_layer(X: np.ndarray, labels: np.ndarray, cfg: dict,
                  with_sklearn: bool = True) -> tuple[list[dict], dict[str, np.ndarray]]:
    """Every (method, implementation, dims) on one layer's activations: metric rows and the embeddings.

    Without scikit-learn only our own PCA and t-SNE run: its side is the comparison, and its 3-D
    Barnes-Hut t-SNE alone takes about 11 s a fit here, three times our exact one."""
    if with_sklearn:  # imported only when compared: 1 s of each stage that runs ours alone
        from sklearn.decomposition import PCA as SkPCA
        from sklearn.manifold import TSNE as SkTSNE

    X = X.astype(np.float32)
    rows, embeddings = [], {}
    tsne_input = X
    if cfg["tsne_pca_dims"] and X.shape[1] > cfg["tsne_pca_dims"]:  # the usual PCA step first, shared by both
        tsne_input = pca.PCA(cfg["tsne_pca_dims"], random_state=cfg["seed"]).fit_transform(X).astype(np.float32)
    for dims in cfg["dims"]:
        ours, t_ours = _timed(lambda: pca.PCA(dims, random_state=cfg["seed"]).fit(X))
        fits = [("ours", ours, ours.transform(X), t_ours)]
        if with_sklearn:
            theirs, t_theirs = _timed(lambda: SkPCA(dims, random_state=cfg["seed"]).fit(X))
            fits.append(("sklearn", theirs, theirs.transform(X), t_theirs))
        agreement = _agreement(fits, pca=True)
        for impl, model, Y, seconds in fits:
            rows.append({"method": "pca", "impl": impl, "dims": dims, "seconds": seconds,
                         "explained_variance": float(model.explained_variance_ratio_.sum()), **agreement})
            embeddings[f"pca_{impl}_{dims}d"] = Y
        common = dict(n_components=dims, perplexity=cfg["perplexity"], init="pca", random_state=cfg["seed"],
                      max_iter=cfg["tsne_iter"])
        ours_t, t_ours = _timed(lambda: tsne.TSNE(**common).fit(tsne_input))
        fits = [("ours", ours_t, ours_t.embedding_.astype(np.float64), t_ours)]  # stored in float64
        if with_sklearn:
            theirs_t, t_theirs = _timed(lambda: SkTSNE(**common, method="barnes_hut").fit(tsne_input))
            fits.append(("sklearn", theirs_t, theirs_t.embedding_, t_theirs))
        agreement = _agreement(fits)
        for impl, model, Y, seconds in fits:
            rows.append({"method": "tsne", "impl": impl, "dims": dims, "seconds": seconds,
                         "kl_divergence": float(model.kl_divergence_),  # as each reports it (BH: approximate)
                         "kl_exact": tsne.kl_divergence(ours_t.P_, Y),  # same P for both
                         **agreement})
            embeddings[f"tsne_{impl}_{dims}d"] = Y
    ranks = input_ranks(np.sqrt(tsne.squared_distances(X)))
    for row in rows:
        Y = embeddings[f"{row['method']}_{row['impl']}_{row['dims']}d"]
        row["trustworthiness"] = trustworthiness_from_ranks(ranks, Y)
        row["knn5_acc"] = knn_accuracy(Y, labels)
    return rows, embeddings


# --- figures ---------------------------------------------------------------------------------

def _scatter(ax, Y, labels, title, classes=None):
    from latentlab.runtime.plotting import plt

    colors = plt.get_cmap("tab10")
    for c in range(10):
        mask = labels == c
        ax.scatter(*Y[mask].T[:3], s=3, color=colors(c), label=classes[c] if classes else str(c), rasterized=True)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    if Y.shape[1] == 3:
        ax.set_zticks([])


def _legend(fig, axes, classes):
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, markerscale=4, fontsize=9, frameon=False)


def model_grid(path, stored, model: str, layers: list[str], classes: list[str]) -> None:
    """Rows = layers, columns = PCA / t-SNE (ours, 2-D), points coloured by class."""
    from latentlab.runtime.plotting import plt, save_figure

    labels = stored[f"{model}/labels"]
    fig, axes = plt.subplots(len(layers), 2, figsize=(8, 3.8 * len(layers) + 0.8), squeeze=False)
    for i, layer in enumerate(layers):
        for j, method in enumerate(("pca", "tsne")):
            _scatter(axes[i, j], stored[f"{model}/{layer}/{method}_ours_2d"], labels, f"{model} · {layer} · {method.upper()}")
    _legend(fig, axes, classes)
    fig.suptitle(f"{model}: layers as seen by PCA and t-SNE (ours)")
    fig.tight_layout(rect=(0, 0.06, 1, 0.97))
    save_figure(path, fig)


def views_3d(path, stored, models, final_layers: dict[str, str], classes: list[str]) -> None:
    """3-D PCA and t-SNE of each model's final layer."""
    from latentlab.runtime.plotting import plt, save_figure

    fig = plt.figure(figsize=(8, 3.6 * len(models) + 0.8))
    axes = []
    for i, model in enumerate(models):
        layer = final_layers[model]
        for j, method in enumerate(("pca", "tsne")):
            ax = fig.add_subplot(len(models), 2, 2 * i + j + 1, projection="3d")
            _scatter(ax, stored[f"{model}/{layer}/{method}_ours_3d"], stored[f"{model}/labels"],
                     f"{model} · {layer} · {method.upper()} 3-D")
            axes.append(ax)
    _legend(fig, np.array(axes), classes)
    save_figure(path, fig)


def ours_vs_sklearn(path, stored, model: str, layer: str, classes: list[str]) -> None:
    from latentlab.runtime.plotting import plt, save_figure

    labels = stored[f"{model}/labels"]
    fig, axes = plt.subplots(2, 2, figsize=(8, 8.6))
    for i, method in enumerate(("pca", "tsne")):
        for j, impl in enumerate(("ours", "sklearn")):
            _scatter(axes[i, j], stored[f"{model}/{layer}/{method}_{impl}_2d"], labels,
                     f"{method.upper()} · {impl} ({model} · {layer})")
    _legend(fig, axes, classes)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    save_figure(path, fig)


def knn_by_layer(path, table: pd.DataFrame, layers: dict[str, list[str]]) -> pd.DataFrame:
    """5-NN accuracy in the 2-D embeddings (ours) per layer depth: do deeper layers separate classes better?"""
    from latentlab.runtime.plotting import plt, save_figure

    rows = table[(table.impl == "ours") & (table.dims == 2)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    records = []
    for ax, method in zip(axes, ("pca", "tsne")):
        for model, names in layers.items():
            sub = rows[(rows.model == model) & (rows.method == method)].set_index("layer")
            accs = [float(sub.loc[name, "knn5_acc"]) for name in names]
            ax.plot(range(1, len(names) + 1), accs, marker="o", label=model)
            records += [{"model": model, "method": method, "depth": d, "layer": n, "knn5_acc": a}
                        for d, (n, a) in enumerate(zip(names, accs), start=1)]
        ax.set_xticks([1, 2, 3], ["conv", "fully connected", "final"])
        ax.set_title(f"5-NN accuracy in the 2-D {method.upper()} embedding"), ax.grid(alpha=0.3)
    axes[0].set_ylabel("5-NN accuracy"), axes[1].legend(fontsize=8)
    save_figure(path, fig)
    return pd.DataFrame(records)


def summary(table: pd.DataFrame) -> dict:
    """metrics/embeddings.json: per method and implementation, mean agreement and separation over the
    models both implementations reduced; per model and layer, the 5-NN accuracy of our 2-D t-SNE."""
    out: dict = {}
    compared = table[table.model.isin(table.model[table.impl == "sklearn"])]  # means over the same models
    for (method, impl, dims), sub in (compared if len(compared) else table).groupby(["method", "impl", "dims"]):
        entry = {"trustworthiness_mean": round(float(sub.trustworthiness.mean()), 4),
                 "knn5_acc_mean": round(float(sub.knn5_acc.mean()), 4)}
        for column in ("kl_divergence", "kl_exact", "evr_max_gap", "procrustes"):
            if column in sub and sub[column].notna().any():
                entry[f"{column}_mean"] = float(f"{sub[column].mean():.4g}")
        out[f"{method}_{impl}_{dims}d"] = entry
    tsne = table[(table.method == "tsne") & (table.impl == "ours") & (table.dims == 2)]
    out["knn5_acc_tsne_ours_2d"] = {f"{r.model}.{r.layer}": round(float(r.knn5_acc), 4) for r in tsne.itertuples()}
    return out
