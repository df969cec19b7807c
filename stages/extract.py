"""Stage extract@<model>: activations of named layers for a class-balanced test sample."""

from latentlab.runtime import reproducible

reproducible.pin_environment()  # before NumPy loads OpenBLAS, which picks its kernels then

import sys  # noqa: E402

import numpy as np  # noqa: E402

from latentlab.studies import activations  # noqa: E402
from latentlab.data import datasets  # noqa: E402
from latentlab.runtime import device, io, stage  # noqa: E402
from latentlab.runtime.errors import LatentlabError  # noqa: E402


def main(params: dict) -> str:
    cfg = params["extract"]
    name = sys.argv[1] if len(sys.argv) > 1 else ""
    if name not in activations.MODELS:
        raise LatentlabError(f"unknown model '{name}'; allowed: {', '.join(activations.MODELS)}")
    if name not in cfg["models"]:
        raise LatentlabError(f"params.yaml: extract.models has no '{name}'; add it with its weights and layers")
    weights, layers = cfg["models"][name]["weights"], cfg["models"][name]["layers"]
    activations.check_layers(name, layers)
    labels = datasets.load_prepared("fashion_mnist_28")["y_test"]
    indices = activations.balanced_sample(labels, cfg["per_class"], cfg["seed"])
    acts = activations.extract(name, weights, layers, indices, device.resolve(params["device"]))
    io.save_npz(f"data/activations/{name}.npz", labels=labels[indices], indices=indices,
                layers=np.array(layers), **{f"act_{k}": v for k, v in acts.items()})
    return f"{name}: {', '.join(f'{k} {v.shape[1]}-d' for k, v in acts.items())} for {len(indices)} test images"


if __name__ == "__main__":
    stage.run("extract", main)
