"""Stage reduce@<model>: PCA and t-SNE (ours, and scikit-learn's for `reduce.sklearn_models`; 2-D and 3-D) of one
model's layers, measured."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402

import pandas as pd  # noqa: E402

from latentlab.studies import embeddings  # noqa: E402
from latentlab.runtime import io, stage, tracking  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params: dict) -> str:
    cfg = params["reduce"]
    model = sys.argv[1] if len(sys.argv) > 1 else ""
    if model not in params["extract"]["models"]:
        raise LatentlabError(f"unknown model '{model}'; allowed: {', '.join(params['extract']['models'])}")
    acts = io.load_npz(f"data/activations/{model}.npz")
    rows, stored = [], {"labels": acts["labels"]}
    with tracking.start_run(stage.name(), {"reduce": cfg}) as run:
        for layer in acts["layers"]:
            layer_rows, layer_embeddings = embeddings.compare_layer(acts[f"act_{layer}"], acts["labels"], cfg,
                                                                       with_sklearn=model in cfg["sklearn_models"])
            rows += [{"model": model, "layer": str(layer), **r} for r in layer_rows]
            stored.update({f"{layer}/{k}": v for k, v in layer_embeddings.items()})
        table = pd.DataFrame(rows)
        io.save_csv(f"metrics/embeddings/{model}.csv", table.drop(columns="seconds").round(6))
        io.save_npz(f"data/embeddings/{model}.npz", **stored)
        totals = table.groupby(["method", "impl"])["seconds"].sum()
        run.log_metrics({f"seconds_{m}_{i}": v for (m, i), v in totals.items()})
        run.log_metrics({f"seconds_{r.layer}_{r.method}_{r.impl}_{r.dims}d": r.seconds for r in table.itertuples()})
        run.log_artifact(f"metrics/embeddings/{model}.csv")
    return f"{model}: " + ", ".join(f"{m} {i} {v:.1f} s" for (m, i), v in totals.items())


if __name__ == "__main__":
    stage.run("reduce", main)
