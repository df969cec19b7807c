"""Stage tsne_full: t-SNE maps of all 70,000 Fashion-MNIST images, FashionNet's penultimate layer beside the pixels.

Each map is fitted to the 60,000 training images (each input reduced to its first principal
components, fitted on them too, then our t-SNE with the FFT-interpolated gradient), and the 10,000
test images, never seen by the fit, are placed into it (`TSNE.transform`). So the map shows how
unseen images fall among the training classes: a test image's 5-NN vote of the training images
near it is a t-SNE classifier's accuracy. The metrics hold what is reproducible: the training
points' leave-one-out 5-NN accuracy and the test images' (exact, a k-d tree in 2-D) and the
fitted map's exact KL divergence; the times go to MLflow and the summary line only, so the outputs
are the same bytes on every run.
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


def inputs(layer: str, dev) -> tuple[dict[str, tuple[np.ndarray, np.ndarray]], np.ndarray, np.ndarray]:
    """The two inputs, each as (training images, test images): the layer's activations and the pixels;
    and the labels of both splits."""
    import torch

    from latentlab.models import classifiers

    native, upsampled = datasets.load_prepared("fashion_mnist_28"), datasets.load_prepared("fashion_mnist_32")
    labels = [native[f"y_{split}"].astype(np.int64) for split in ("train", "test")]
    model = classifiers.build("fashionnet")
    io.load_weights(model, "models/fashionnet.pt")
    model = model.to(dev)
    features = {f"fashionnet_{layer}": [], "pixels": []}
    for split in ("train", "test"):
        images = classifiers.normalize(torch.from_numpy(upsampled[f"x_{split}"])).to(dev)
        features[f"fashionnet_{layer}"].append(activations.torch_activations(model, [layer], images)[layer])
        x = native[f"x_{split}"]
        features["pixels"].append(x.reshape(len(x), -1).astype(np.float32) / 255)
    return {name: tuple(pair) for name, pair in features.items()}, labels[0], labels[1]


def fit_map(train: np.ndarray, test: np.ndarray, cfg: dict) -> tuple[tsne.TSNE, np.ndarray, float]:
    """One map: the training images' first principal components, then our t-SNE of them; the test
    images placed into it; and the seconds it all took."""
    start = time.perf_counter()
    if cfg["pca_dims"] and train.shape[1] > cfg["pca_dims"]:
        features = pca.PCA(cfg["pca_dims"], random_state=cfg["seed"]).fit(train)
        train, test = features.transform(train), features.transform(test)
    model = tsne.TSNE(2, perplexity=cfg["perplexity"], max_iter=cfg["iterations"], init="pca",
                      random_state=cfg["seed"], method=cfg["method"]).fit(train.astype(np.float32))
    placed = model.transform(test.astype(np.float32))
    return model, placed.astype(np.float64), time.perf_counter() - start


def figure(path: Path, maps: dict[str, tuple[np.ndarray, np.ndarray]], labels: tuple[np.ndarray, np.ndarray],
           scores: dict[str, dict]) -> None:
    """Each map with its training images faint and its placed test images solid, coloured by class."""
    fig, axes = plt.subplots(1, len(maps), figsize=(7.5 * len(maps), 8.0), squeeze=False)
    for ax, (name, (fitted, placed)) in zip(axes[0], maps.items()):
        for c in range(10):
            ax.scatter(*fitted[labels[0] == c].T, s=0.2, lw=0, alpha=0.35, color=COLORS(c), rasterized=True)
            ax.scatter(*placed[labels[1] == c].T, s=0.6, lw=0, color=COLORS(c), label=datasets.FASHION_CLASSES[c],
                       rasterized=True)
        ax.set_title(f"{name.replace('_', ' ')}: 5-NN accuracy {scores[name]['knn5_acc']:.4f} (training), "
                     f"{scores[name]['knn5_acc_placed']:.4f} (test, placed), KL {scores[name]['kl_divergence']:.3f}",
                     fontsize=10)
        ax.set_xticks([]), ax.set_yticks([]), ax.set_aspect("equal")
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=5, markerscale=20, fontsize=10, frameon=False)
    n_fit, n_placed = len(labels[0]), len(labels[1])
    fig.suptitle(f"t-SNE of all {n_fit + n_placed:,} Fashion-MNIST images: the map fitted to the {n_fit:,} "
                 f"training images (faint), the {n_placed:,} test images placed into it", fontsize=11)
    fig.tight_layout(rect=(0, 0.05, 1, 0.97))
    save_figure(path, fig)


def main(params: dict) -> str:
    cfg = params["tsne_full"]
    known = activations.available_layers("fashionnet")
    if cfg["layer"] not in known:
        raise LatentlabError(f"params.yaml: tsne_full.layer = {cfg['layer']!r} is invalid; allowed: {', '.join(known)}")
    dev = device.resolve(params["device"])
    with tracking.start_run(stage.name(), {"tsne_full": cfg, "device": str(dev)}) as run:
        features, train_labels, test_labels = inputs(cfg["layer"], dev)
        n_fit, n_placed = len(train_labels), len(test_labels)
        if cfg["perplexity"] >= n_fit:
            raise LatentlabError(f"params.yaml: tsne_full.perplexity = {cfg['perplexity']} is out of range; "
                                 f"allowed: below the number of training images ({n_fit})")
        # both maps at once: one fit keeps a core and a half busy, two fill both. The BLAS stays at one
        # thread for all of it, so neither fit's numbers depend on when the other one runs
        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(len(features)) as pool:
            fits = dict(zip(features, pool.map(lambda pair: fit_map(*pair, cfg), features.values())))
        maps = {name: (model.embedding_.astype(np.float64), placed) for name, (model, placed, _) in fits.items()}
        seconds = {name: s for name, (_, _, s) in fits.items()}
        scores = {name: {"n_fitted": n_fit, "n_placed": n_placed, "method": model.method_,
                         "knn5_acc": round(embeddings.knn_accuracy(maps[name][0], train_labels), 4),
                         "knn5_acc_placed": round(embeddings.placed_knn_accuracy(*maps[name], train_labels,
                                                                                 test_labels), 4),
                         "kl_divergence": round(tsne.kl_divergence(model.P_, model.embedding_), 4)}
                  for name, (model, _, _) in fits.items()}
        io.save_json("metrics/tsne_full.json", scores)
        figure(FIGURE, maps, (train_labels, test_labels), scores)
        run.log_metrics({f"{k}_{name}": v for name, s in scores.items() for k, v in s.items() if k != "method"})
        run.log_metrics({f"seconds_{name}": round(s, 1) for name, s in seconds.items()})
    return (f"{n_fit:,} images mapped, {n_placed:,} placed: "
            + ", ".join(f"{name} 5-NN {scores[name]['knn5_acc']:.4f} / placed {scores[name]['knn5_acc_placed']:.4f}, "
                        f"KL {scores[name]['kl_divergence']:.3f} ({seconds[name]:.0f} s)" for name in maps))


if __name__ == "__main__":
    stage.run("tsne_full", main)
