"""Stage embedding_figures: the embeddings table and metrics, per-model grids, 3-D views, ours vs
scikit-learn, and 5-NN accuracy by layer."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

from pathlib import Path  # noqa: E402

import pandas as pd  # noqa: E402

from latentlab.data import datasets  # noqa: E402
from latentlab.studies import embeddings  # noqa: E402
from latentlab.runtime import io, stage  # noqa: E402

OUT = Path("figures/embeddings")


def main(params: dict) -> str:
    layers = {name: model["layers"] for name, model in params["extract"]["models"].items()}
    models = list(layers)
    stored = {f"{m}/{k}": v for m in models for k, v in io.load_npz(f"data/embeddings/{m}.npz").items()}
    table = pd.concat([pd.read_csv(f"metrics/embeddings/{m}.csv") for m in models], ignore_index=True)
    io.save_csv("metrics/embeddings.csv", table)
    io.save_json("metrics/embeddings.json", embeddings.summary(table))
    classes = list(datasets.FASHION_CLASSES)
    for model in models:
        embeddings.model_grid(OUT / f"{model}_grid.png", stored, model, layers[model], classes)
    embeddings.views_3d(OUT / "views_3d.png", stored, models, {m: layers[m][-1] for m in models}, classes)
    compared = params["reduce"]["sklearn_models"]  # the schema keeps them among extract.models
    if compared:  # the first network scikit-learn reduced too, at its middle layer
        shown = compared[0]
        layer = layers[shown][min(1, len(layers[shown]) - 1)]
        embeddings.ours_vs_sklearn(OUT / "ours_vs_sklearn.png", stored, shown, layer, classes)
    knn = embeddings.knn_by_layer(OUT / "knn_by_layer.png", table, layers)
    io.save_csv("plots/embeddings/knn_by_layer.csv", knn)
    return f"{len(models) + 2 + bool(compared)} figures in {OUT}, {len(table)} rows in metrics/embeddings.csv"


if __name__ == "__main__":
    stage.run("embedding_figures", main)
