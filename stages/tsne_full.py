"""Stage tsne_full: t-SNE maps of all 70,000 Fashion-MNIST images, FashionNet's penultimate layer beside the pixels.

Train and test images together, each input reduced to its first principal components, then our
t-SNE (the FFT-interpolated gradient at this size). The metrics hold what is reproducible: each
map's 5-NN accuracy, exact over all points (a k-d tree in 2-D), and its exact KL divergence; the
times go to MLflow and the summary line only, so the outputs are the same bytes on every run.
"""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

from latentlab.studies import activations, embeddings  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, stage, tracking  # noqa: E402
from latentlab.algorithms import pca, tsne  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402
from latentlab.runtime.plotting import plt, save_figure  # noqa: E402

FIGURE = Path("figures/tsne_full/maps.png")
COLORS = plt.get_cmap("tab10")


def inputs(layer: str, dev) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The two inputs for train + test images: the layer's activations and the flattened pixels."""
    import torch

    from latentlab.models import classifiers

    native, upsampled = datasets.load_prepared("fashion_mnist_28"), datasets.load_prepared("fashion_mnist_32")
    labels = np.concatenate([native["y_train"], native["y_test"]]).astype(np.int64)
    pixels = np.concatenate([native["x_train"], native["x_test"]]).reshape(len(labels), -1).astype(np.float32) / 255
    model = classifiers.build("fashionnet")
    io.load_weights(model, "models/fashionnet.pt")
    images = torch.from_numpy(np.concatenate([upsampled["x_train"], upsampled["x_test"]]))
    acts = activations.torch_activations(model.to(dev), [layer], classifiers.normalize(images).to(dev))[layer]
    return {f"fashionnet_{layer}": acts, "pixels": pixels}, labels


def fit_map(X: np.ndarray, cfg: dict) -> tuple[tsne.TSNE, float]:
    """One map: the input's first principal components, then our t-SNE; and the seconds it took."""
    start = time.perf_counter()
    if cfg["pca_dims"] and X.shape[1] > cfg["pca_dims"]:
        X = pca.PCA(cfg["pca_dims"], random_state=cfg["seed"]).fit_transform(X)
    model = tsne.TSNE(2, perplexity=cfg["perplexity"], max_iter=cfg["iterations"], init="pca",
                      random_state=cfg["seed"], method=cfg["method"]).fit(X.astype(np.float32))
    return model, time.perf_counter() - start


def figure(path: Path, maps: dict[str, np.ndarray], labels: np.ndarray, scores: dict[str, dict]) -> None:
    fig, axes = plt.subplots(1, len(maps), figsize=(7.5 * len(maps), 8.0), squeeze=False)
    for ax, (name, Y) in zip(axes[0], maps.items()):
        for c in range(10):
            mask = labels == c
            ax.scatter(*Y[mask].T, s=0.2, lw=0, color=COLORS(c), label=datasets.FASHION_CLASSES[c], rasterized=True)
        ax.set_title(f"{name.replace('_', ' ')}: 5-NN accuracy {scores[name]['knn5_acc']:.4f}, "
                     f"KL {scores[name]['kl_divergence']:.3f}", fontsize=10)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_aspect("equal")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, markerscale=20, fontsize=10, frameon=False)
    fig.suptitle(f"t-SNE of all {len(labels):,} Fashion-MNIST images (train + test), coloured by class")
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    save_figure(path, fig)


def main(params: dict) -> str:
    cfg = params["tsne_full"]
    known = activations.available_layers("fashionnet")
    if cfg["layer"] not in known:
        raise LatentlabError(f"params.yaml: tsne_full.layer = {cfg['layer']!r} is invalid; allowed: {', '.join(known)}")
    dev = device.resolve(params["device"])
    with tracking.start_run(stage.name(), {"tsne_full": cfg, "device": str(dev)}) as run:
        features, labels = inputs(cfg["layer"], dev)
        n = len(labels)
        if cfg["perplexity"] >= n:
            raise LatentlabError(f"params.yaml: tsne_full.perplexity = {cfg['perplexity']} is out of range; "
                                 f"allowed: below the number of images ({n})")
        # both maps at once: one fit keeps a core and a half busy, two fill both. The BLAS stays at one
        # thread for all of it, so neither fit's numbers depend on when the other one runs
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(len(features)) as pool:
            fits = dict(zip(features, pool.map(lambda X: fit_map(X, cfg), features.values())))
        maps = {name: model.embedding_.astype(np.float64) for name, (model, _) in fits.items()}
        seconds = {name: s for name, (_, s) in fits.items()}
        scores = {name: {"n": n, "method": model.method_,
                         "knn5_acc": round(embeddings.knn_accuracy(maps[name], labels), 4),
                         "kl_divergence": round(tsne.kl_divergence(model.P_, model.embedding_), 4)}
                  for name, (model, _) in fits.items()}
        io.save_json("metrics/tsne_full.json", scores)
        figure(FIGURE, maps, labels, scores)
        run.log_metrics({f"{k}_{name}": v for name, s in scores.items() for k, v in s.items() if k != "method"})
        run.log_metrics({f"seconds_{name}": round(s, 1) for name, s in seconds.items()})
    return f"{n:,} images: " + ", ".join(f"{name} 5-NN {scores[name]['knn5_acc']:.4f}, KL "
                                         f"{scores[name]['kl_divergence']:.3f} ({seconds[name]:.0f} s)" for name in maps)


if __name__ == "__main__":
    stage.run("tsne_full", main)
