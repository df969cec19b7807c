"""Figures of the embeddings: scatter grids coloured by class, 3-D views, and 5-NN accuracy by layer."""

from __future__ import annotations

import numpy as np
import pandas as pd

from .plotting import plt, save_figure

COLORS = plt.get_cmap("tab10")


def _scatter(ax, Y, labels, title, classes=None):
    for c in range(10):
        mask = labels == c
        ax.scatter(*Y[mask].T[:3], s=3, color=COLORS(c), label=classes[c] if classes else str(c), rasterized=True)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([]), ax.set_yticks([])
    if Y.shape[1] == 3:
        ax.set_zticks([])


def _legend(fig, axes, classes):
    handles, names = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, markerscale=4, fontsize=9, frameon=False)


def model_grid(path, stored, model: str, layers: list[str], classes: list[str]) -> None:
    """Rows = layers, columns = PCA / t-SNE (ours, 2-D), points coloured by class."""
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
    """metrics/embeddings.json: per method and implementation, mean agreement and
    separation; per model and layer, the 5-NN accuracy of our 2-D t-SNE. Small enough to diff."""
    out: dict = {}
    for (method, impl, dims), sub in table.groupby(["method", "impl", "dims"]):
        entry = {"trustworthiness_mean": round(float(sub.trustworthiness.mean()), 4),
                 "knn5_acc_mean": round(float(sub.knn5_acc.mean()), 4)}
        for column in ("kl_divergence", "kl_exact", "evr_max_gap", "procrustes"):
            if column in sub and sub[column].notna().any():
                entry[f"{column}_mean"] = float(f"{sub[column].mean():.4g}")
        out[f"{method}_{impl}_{dims}d"] = entry
    tsne = table[(table.method == "tsne") & (table.impl == "ours") & (table.dims == 2)]
    out["knn5_acc_tsne_ours_2d"] = {f"{r.model}.{r.layer}": round(float(r.knn5_acc), 4) for r in tsne.itertuples()}
    return out
