"""A small neural-network library in pure NumPy: readable like micrograd, but vectorised over batches.

Each layer owns its `Parameter`s (value + grad), caches what its backward needs during `forward`, and
returns the gradient with respect to its input from `backward`. `Net` chains named layers; like
torch, `net.register_forward_hook(name, fn)` calls `fn(layer, input, output)` during forward, which is
how the `extract` stage reads activations without a second copy of the forward pass.

Layer names of `Net.mlp([784, 512, 128, 10])`: fc1, relu1, fc2, relu2, logits.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path
from typing import Callable

import numpy as np


class Parameter:
    def __init__(self, value: np.ndarray):
        self.value = value
        self.grad = np.zeros_like(value)


class Layer:
    def parameters(self) -> list[Parameter]:
        return []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)


class Linear(Layer):
    """y = x W + b, with He initialisation (suits the ReLUs that follow)."""

    def __init__(self, n_in: int, n_out: int, rng: np.random.Generator, dtype=np.float32):
        self.W = Parameter((rng.standard_normal((n_in, n_out)) * math.sqrt(2.0 / n_in)).astype(dtype))
        self.b = Parameter(np.zeros(n_out, dtype=dtype))

    def parameters(self):
        return [self.W, self.b]

    def forward(self, x):
        self.x = x
        return x @ self.W.value + self.b.value

    def backward(self, grad):
        self.W.grad += self.x.T @ grad
        self.b.grad += grad.sum(0)
        return grad @ self.W.value.T


class ReLU(Layer):
    def forward(self, x):
        self.mask = x > 0
        return x * self.mask

    def backward(self, grad):
        return grad * self.mask


class Sigmoid(Layer):
    def forward(self, x):
        self.y = 0.5 * (1.0 + np.tanh(0.5 * x))  # stable for large |x|, unlike 1 / (1 + exp(-x))
        return self.y

    def backward(self, grad):
        return grad * self.y * (1.0 - self.y)


class Tanh(Layer):
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, grad):
        return grad * (1.0 - self.y ** 2)


ACTIVATIONS = {"relu": ReLU, "sigmoid": Sigmoid, "tanh": Tanh}


class _Handle:
    def __init__(self, hooks: list, fn):
        self.hooks, self.fn = hooks, fn

    def remove(self):
        self.hooks.remove(self.fn)


class Net:
    """Named layers applied in order; forward hooks as in torch."""

    def __init__(self, layers: "OrderedDict[str, Layer]"):
        self.layers = layers
        self._hooks: dict[str, list[Callable]] = {name: [] for name in layers}

    @classmethod
    def mlp(cls, sizes: list[int], activation: str = "relu", seed: int = 0, dtype=np.float32) -> "Net":
        rng = np.random.default_rng(seed)
        layers: OrderedDict[str, Layer] = OrderedDict()
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:]), start=1):
            last = i == len(sizes) - 1
            layers["logits" if last else f"fc{i}"] = Linear(n_in, n_out, rng, dtype)
            if not last:
                layers[f"{activation}{i}"] = ACTIVATIONS[activation]()
        net = cls(layers)
        net.sizes, net.activation = list(sizes), activation
        return net

    def register_forward_hook(self, name: str, fn: Callable) -> _Handle:
        if name not in self.layers:
            raise KeyError(f"no layer '{name}'; layers: {', '.join(self.layers)}")
        self._hooks[name].append(fn)
        return _Handle(self._hooks[name], fn)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for name, layer in self.layers.items():
            out = layer.forward(x)
            for hook in self._hooks[name]:
                hook(layer, x, out)
            x = out
        return x

    __call__ = forward

    def backward(self, grad: np.ndarray) -> np.ndarray:
        for layer in reversed(self.layers.values()):
            grad = layer.backward(grad)
        return grad

    def parameters(self) -> list[Parameter]:
        return [p for layer in self.layers.values() for p in layer.parameters()]

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad.fill(0)

    def state(self) -> dict[str, np.ndarray]:
        arrays = {"sizes": np.array(self.sizes), "activation": np.array(self.activation)}
        for name, layer in self.layers.items():
            if isinstance(layer, Linear):
                arrays[f"{name}.W"], arrays[f"{name}.b"] = layer.W.value, layer.b.value
        return arrays

    def save(self, path: str | Path) -> None:
        from latentlab.runtime.io import save_npz

        save_npz(path, **self.state())

    @classmethod
    def load(cls, path: str | Path) -> "Net":
        from latentlab.runtime.errors import LatentlabError
        from latentlab.runtime.io import REBUILD, load_npz

        data = load_npz(path)
        try:
            net = cls.mlp([int(s) for s in data["sizes"]], str(data["activation"]), dtype=data["logits.W"].dtype)
            for name, layer in net.layers.items():
                if isinstance(layer, Linear):
                    if data[f"{name}.W"].shape != layer.W.value.shape:
                        raise ValueError(f"{name}.W is {data[f'{name}.W'].shape}")
                    layer.W.value, layer.b.value = data[f"{name}.W"].copy(), data[f"{name}.b"].copy()
        except (KeyError, ValueError, TypeError) as exc:
            raise LatentlabError(f"{path}: not a saved network of this kind ({exc}); {REBUILD}") from None
        return net


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of integer labels and its gradient w.r.t. the logits (softmax − one-hot) / n."""
    shifted = logits - logits.max(1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
    n = len(labels)
    one_hot = np.zeros_like(logits)
    one_hot[np.arange(n), labels] = 1.0
    loss = -float((log_probs * one_hot).sum()) / n
    return loss, (np.exp(log_probs) - one_hot) / n


class SGD:
    """v ← μ·v + (g + λ·w);  w ← w − lr·v.  With μ = 0 this is plain SGD with L2 weight decay."""

    def __init__(self, params: list[Parameter], lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        self.params, self.lr, self.momentum, self.weight_decay = params, lr, momentum, weight_decay
        self.velocity = [np.zeros_like(p.value) for p in params]

    def step(self) -> None:
        for p, v in zip(self.params, self.velocity):
            g = p.grad + self.weight_decay * p.value if self.weight_decay else p.grad
            if self.momentum:
                v *= self.momentum
                v += g
                g = v
            p.value -= self.lr * g


class ExponentialLR:
    """lr_t = lr0 · e^(−k·t), t counted in epochs."""

    def __init__(self, optimizer: SGD, k: float):
        self.optimizer, self.lr0, self.k, self.t = optimizer, optimizer.lr, k, 0

    def step(self) -> None:
        self.t += 1
        self.optimizer.lr = self.lr0 * math.exp(-self.k * self.t)


class StepLR:
    """lr_t = lr0 · k^t, t counted in epochs."""

    def __init__(self, optimizer: SGD, k: float):
        self.optimizer, self.lr0, self.k, self.t = optimizer, optimizer.lr, k, 0

    def step(self) -> None:
        self.t += 1
        self.optimizer.lr = self.lr0 * self.k ** self.t
