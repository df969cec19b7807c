"""Reading what trained networks compute: activations of named layers through forward hooks.

Hooks observe the model's own forward pass (no copy of its forward code), for the PyTorch
classifiers and the NumPy MLP alike, on a class-balanced sample of the test set.
"""

from __future__ import annotations

import numpy as np
import torch

from latentlab.runtime import io
from latentlab.algorithms import numpy_nn
from latentlab.runtime.errors import LatentlabError
from latentlab.models import classifiers

MODELS = (*classifiers.ARCHITECTURES, "numpy_mlp")


def balanced_sample(labels: np.ndarray, per_class: int, seed: int) -> np.ndarray:
    """`per_class` indices of every class, drawn without replacement by a seeded generator, sorted."""
    rng = np.random.default_rng(seed)
    chosen = []
    for c in np.unique(labels):
        pool = np.flatnonzero(labels == c)
        if len(pool) < per_class:
            raise LatentlabError(f"params.yaml: extract.per_class = {per_class} but class {c} has only "
                                 f"{len(pool)} test images; allowed: 15..{len(pool)}")
        chosen.append(rng.choice(pool, per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def available_layers(model_name: str) -> list[str]:
    if model_name == "numpy_mlp":
        return [n for n in numpy_nn.Net.mlp([784, 2, 2, 10]).layers if not n.startswith(("relu", "sigmoid", "tanh"))]
    return classifiers.layer_names(classifiers.build(model_name))


def check_layers(model_name: str, layers: list[str]) -> None:
    known = available_layers(model_name)
    for layer in layers:
        if layer not in known:
            raise LatentlabError(f"params.yaml: extract.models.{model_name}.layers names '{layer}'; allowed: {', '.join(known)}")


@torch.no_grad()
def torch_activations(model: torch.nn.Module, layers: list[str], inputs: torch.Tensor,
                      batch_size: int = 500) -> dict[str, np.ndarray]:
    """Flattened outputs of the named child modules for every input, in eval mode.

    Images go through channels_last, as in training (except on MPS): FashionNet's 70,000 images in
    7.2 s instead of 13.9 on the 2-core CPU, the activations equal to 1e-6."""
    model.eval()
    memory_format = torch.contiguous_format
    if inputs.dim() == 4 and inputs.device.type != "mps":
        memory_format = torch.channels_last
        model.to(memory_format=memory_format)
    captured: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    handles = [getattr(model, name).register_forward_hook(
        lambda module, args, out, name=name: captured[name].append(out.detach().flatten(1).float().cpu()))
        for name in layers]
    try:
        for i in range(0, len(inputs), batch_size):
            model(inputs[i:i + batch_size].contiguous(memory_format=memory_format))
    finally:
        for handle in handles:
            handle.remove()
    return {name: torch.cat(chunks).numpy() for name, chunks in captured.items()}


def numpy_activations(net: numpy_nn.Net, layers: list[str], inputs: np.ndarray) -> dict[str, np.ndarray]:
    captured: dict[str, np.ndarray] = {}
    handles = [net.register_forward_hook(name, lambda layer, inp, out, name=name: captured.__setitem__(name, out.copy()))
               for name in layers]
    try:
        net.forward(inputs)
    finally:
        for handle in handles:
            handle.remove()
    return {name: captured[name].astype(np.float32) for name in layers}


def extract(model_name: str, weights: str, layers: list[str], indices: np.ndarray,
            device: torch.device) -> dict[str, np.ndarray]:
    """Load the trained model from `weights` and return its activations on the chosen test images."""
    from latentlab.data import datasets
    from latentlab.studies import numpy_mlp

    if model_name == "numpy_mlp":
        split = datasets.load_prepared("fashion_mnist_28")
        net = numpy_nn.Net.load(weights)
        return numpy_activations(net, layers, numpy_mlp.flatten_normalize(split["x_test"][indices]))
    split = datasets.load_prepared("fashion_mnist_32")
    model = classifiers.build(model_name)
    io.load_weights(model, weights)
    x = classifiers.normalize(torch.from_numpy(split["x_test"][indices]))
    return torch_activations(model.to(device), layers, x.to(device))
