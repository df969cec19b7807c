"""Stage reduce: PCA and t-SNE (ours and scikit-learn's, 2-D and 3-D) of every extracted layer, measured."""

import pandas as pd

from latentlab import activations, embeddings, io, stage, tracking
from latentlab.errors import LatentlabError


def main(params: dict) -> str:
    cfg = params["reduce"]
    n = params["extract"]["per_class"] * 10  # class-balanced sample of the 10 classes
    if cfg["perplexity"] >= n:
        raise LatentlabError(f"params.yaml: reduce.perplexity = {cfg['perplexity']} is out of range; allowed: "
                             f"below the number of samples ({n} = 10 x extract.per_class)")
    rows, stored = [], {}
    with tracking.start_run("reduce", {"reduce": cfg, "extract": params["extract"]}) as run:
        for model in activations.MODELS:
            acts = io.load_npz(f"data/activations/{model}.npz")
            stored[f"{model}/labels"] = acts["labels"]
            for layer in acts["layers"]:
                layer_rows, layer_embeddings = embeddings.compare_layer(acts[f"act_{layer}"], acts["labels"], cfg)
                rows += [{"model": model, "layer": str(layer), **r} for r in layer_rows]
                stored.update({f"{model}/{layer}/{k}": v for k, v in layer_embeddings.items()})
        table = pd.DataFrame(rows)
        io.save_csv("metrics/embeddings.csv", table.round(6))
        io.save_npz("data/embeddings.npz", **stored)
        summary = {}
        for r in rows:
            key = f"{r['model']}.{r['layer']}.{r['method']}_{r['impl']}_{r['dims']}d"
            summary[key] = {k: round(v, 5) for k, v in r.items() if isinstance(v, float)}
        io.save_json("metrics/embeddings.json", summary)
        totals = table.groupby(["method", "impl"])["seconds"].sum()
        run.log_metrics({f"seconds_{m}_{i}": v for (m, i), v in totals.items()})
        run.log_artifact("metrics/embeddings.csv")
    return ", ".join(f"{m} {i} {v:.1f} s" for (m, i), v in totals.items())


if __name__ == "__main__":
    stage.run("reduce", main)
