"""Stage embedding_figures: per-model grids (layers x PCA/t-SNE), 3-D views, ours vs scikit-learn, 5-NN by layer."""

from pathlib import Path

import pandas as pd

from latentlab import activations, data, embedding_plots, io, stage

OUT = Path("plots/embeddings")


def main(params: dict) -> str:
    stored = io.load_npz("data/embeddings.npz")
    table = pd.read_csv("metrics/embeddings.csv")
    classes = list(data.FASHION_CLASSES)
    for model in activations.MODELS:
        layers = params["extract"]["layers"][model]
        embedding_plots.model_grid(OUT / f"{model}_grid.png", stored, model, layers, classes)
    embedding_plots.views_3d(OUT / "views_3d.png", stored, activations.MODELS,
                             {m: params["extract"]["layers"][m][-1] for m in activations.MODELS}, classes)
    model = "fashionnet"
    layer = params["extract"]["layers"][model][1]
    embedding_plots.ours_vs_sklearn(OUT / "ours_vs_sklearn.png", stored, model, layer, classes)
    knn = embedding_plots.knn_by_layer(OUT / "knn_by_layer.png", table, params["extract"]["layers"])
    io.save_csv(OUT / "knn_by_layer.csv", knn)
    return f"{len(activations.MODELS) + 3} figures in {OUT}"


if __name__ == "__main__":
    stage.run("embedding_figures", main)
