"""The NumPy MLP study: the from-scratch network of `numpy_nn` trained on Fashion-MNIST, with the same
epochs, curves and checks as PyTorch's loop, and its weight figures."""

from __future__ import annotations

import math
import time

import numpy as np
from tqdm.auto import tqdm

from latentlab.algorithms import numpy_nn as nn
from latentlab.models.training import History, check_finite

MEAN, STD = 0.286, 0.353  # Fashion-MNIST pixel statistics on the [0, 1] scale


def flatten_normalize(images: np.ndarray, dtype=np.float32) -> np.ndarray:
    """uint8 (N, 28, 28) -> (N, 784) standardised floats."""
    return ((images.reshape(len(images), -1).astype(dtype) / 255.0 - MEAN) / STD).astype(dtype)


def evaluate(net: nn.Net, x: np.ndarray, y: np.ndarray, batch_size: int = 2000) -> tuple[float, float]:
    loss_sum, correct = 0.0, 0
    for i in range(0, len(x), batch_size):
        logits = net.forward(x[i:i + batch_size])
        loss, _ = nn.softmax_cross_entropy(logits, y[i:i + batch_size])
        loss_sum += loss * len(logits)
        correct += int((logits.argmax(1) == y[i:i + batch_size]).sum())
    return loss_sum / len(x), correct / len(x)


def make_scheduler(opt: nn.SGD, kind: str, k: float):
    return {"exponential": nn.ExponentialLR, "step": nn.StepLR}[kind](opt, k) if kind != "none" else None


def fit(cfg: dict, split: dict[str, np.ndarray], name: str = "train_numpy_mlp", on_epoch=None) -> tuple[nn.Net, History]:
    """Mini-batch SGD over seeded shuffles; train metrics are running means over the epoch.

    BLAS runs single-threaded here: a 64-row batch is too small to split, and on 2 busy cores the
    threads' synchronisation made each step 3-4x slower (45 vs 12 ms measured).
    """
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        return _fit(cfg, split, name, on_epoch)


def _fit(cfg, split, name, on_epoch):
    dtype = np.float32 if cfg["dtype"] == "float32" else np.float64
    x_train, y_train = flatten_normalize(split["x_train"], dtype), split["y_train"]
    x_test, y_test = flatten_normalize(split["x_test"], dtype), split["y_test"]
    net = nn.Net.mlp(cfg["sizes"], cfg["activation"], seed=cfg["seed"], dtype=dtype)
    opt = nn.SGD(net.parameters(), lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
    scheduler = make_scheduler(opt, cfg["scheduler"], cfg["decay"])
    rng = np.random.default_rng(cfg["seed"])
    history, n, bs = History(), len(x_train), cfg["batch_size"]
    for epoch in tqdm(range(1, cfg["epochs"] + 1), desc=name, unit="epoch", disable=None):
        order = rng.permutation(n)
        loss_sum, correct, start = 0.0, 0, time.perf_counter()
        for i in tqdm(range(0, n, bs), desc=f"epoch {epoch}", leave=False, unit="batch", mininterval=1.0, disable=None):
            idx = order[i:i + bs]
            logits = net.forward(x_train[idx])
            loss, grad = nn.softmax_cross_entropy(logits, y_train[idx])
            net.zero_grad()
            net.backward(grad)
            opt.step()
            loss_sum += loss * len(idx)
            correct += int((logits.argmax(1) == y_train[idx]).sum())
        history.train_seconds += time.perf_counter() - start
        history.train_images += n
        check_finite(name, epoch, loss_sum)
        test_loss, test_acc = evaluate(net, x_test, y_test)
        row = {"epoch": epoch, "train_loss": loss_sum / n, "train_acc": correct / n, "test_loss": test_loss,
               "test_acc": test_acc, "lr": opt.lr}
        history.rows.append(row)
        if scheduler is not None:
            scheduler.step()
        if on_epoch is not None:
            on_epoch(epoch, row)
    return net, history


def weights_figure(path, net: nn.Net) -> None:
    """Each Linear layer's weight matrix as a heat map (diverging, centred on zero)."""
    from latentlab.runtime.plotting import plt, save_figure

    linears = [(n, l) for n, l in net.layers.items() if isinstance(l, nn.Linear)]
    fig, axes = plt.subplots(1, len(linears), figsize=(5 * len(linears), 4.2), squeeze=False)
    for ax, (name, layer) in zip(axes[0], linears):
        w = layer.W.value
        lim = float(np.abs(w).max())
        im = ax.imshow(w.T, aspect="auto", cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
        ax.set_title(f"{name}: {w.shape[0]}→{w.shape[1]}"), ax.set_xlabel("input"), ax.set_ylabel("unit")
        fig.colorbar(im, ax=ax, fraction=0.046)
    save_figure(path, fig)


def first_layer_tiles(path, net: nn.Net, side: int = 28) -> None:
    """Each first-layer hidden unit's 784 input weights as a 28x28 tile: what the unit looks for."""
    from latentlab.runtime.plotting import plt, save_figure

    w = next(l for l in net.layers.values() if isinstance(l, nn.Linear)).W.value.T  # (units, 784)
    cols = 32
    rows = math.ceil(len(w) / cols)
    canvas = np.full((rows * (side + 1), cols * (side + 1)), np.nan)
    for i, unit in enumerate(w):
        r, c = divmod(i, cols)
        tile = unit.reshape(side, side)
        canvas[r * (side + 1):r * (side + 1) + side, c * (side + 1):c * (side + 1) + side] = tile / (np.abs(tile).max() + 1e-12)
    fig, ax = plt.subplots(figsize=(cols * 0.5, rows * 0.5))
    ax.imshow(canvas, cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_axis_off(), ax.set_title(f"first layer: {len(w)} hidden units as 28x28 input-weight tiles")
    save_figure(path, fig)
