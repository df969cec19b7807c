"""The Fashion-MNIST classifiers study: augmentation, the step, `fit`, predictions, the confusion matrix.

The architectures live in `models/classifiers.py`; this module trains and evaluates any of them."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from latentlab.models import training
from latentlab.runtime.device import autocast, use_amp
from latentlab.models.classifiers import build, normalize


def random_crop_flip(images: torch.Tensor, padding: int, hflip: bool, generator: torch.Generator) -> torch.Tensor:
    """Random crop after zero padding, and random horizontal flip, for a whole (N, C, H, W) batch at once.

    One gather with per-sample offsets instead of a Python loop over samples.
    """
    n, _, h, w = images.shape
    if padding:
        padded = F.pad(images, (padding, padding, padding, padding))
        dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
        dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator).to(images.device)
        rows = (dy[:, None] + torch.arange(h, device=images.device))[:, None, :, None]
        cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, None, :]
        batch = torch.arange(n, device=images.device)[:, None, None, None]
        channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
        images = padded[batch, channel, rows, cols]
    if hflip:
        flip = (torch.rand(n, generator=generator) < 0.5).to(images.device)[:, None, None, None]
        images = torch.where(flip, images.flip(-1), images)
    return images


def make_step(cfg: dict, seed: int, channels_last: bool):
    """The training step: normalise uint8 input, augment when training, cross-entropy, count correct."""
    generator = torch.Generator().manual_seed(seed + 1)
    aug = cfg["augment"]
    memory_format = torch.channels_last if channels_last else torch.contiguous_format

    def step(model, batch, train):
        x, y = batch
        x = normalize(x)
        if train:
            x = random_crop_flip(x, aug["crop_padding"], aug["hflip"], generator)
        logits = model(x.contiguous(memory_format=memory_format))
        loss = F.cross_entropy(logits, y, label_smoothing=cfg["label_smoothing"] if train else 0.0)
        return loss, {"acc": (logits.argmax(1) == y).sum()}

    return step


def make_optimizer(model: torch.nn.Module, cfg: dict, batches_per_epoch: int):
    """SGD (Nesterov momentum) or AdamW, and the schedule: `cosine` and `step` move once per epoch;
    `warmup_cosine` warms up linearly over `warmup_epochs`, then anneals by a cosine at every batch, which
    gave LeNet-5 in 14 epochs the accuracy 20 epochs of `cosine` gave."""
    if cfg["optimizer"] == "sgd":
        opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"], nesterov=cfg["momentum"] > 0)
    else:
        opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    if cfg["schedule"] == "warmup_cosine":
        return opt, training.cosine_schedule(opt, cfg["epochs"], batches_per_epoch, cfg["warmup_epochs"])
    if cfg["schedule"] == "cosine":
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"])
    elif cfg["schedule"] == "step":
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=max(1, cfg["epochs"] // 3), gamma=0.1)
    else:
        sched = None
    return opt, sched


def fit(name: str, cfg: dict, split: dict[str, np.ndarray], device: torch.device, on_epoch=None):
    """Build, train and return (model, history) for one architecture under its params section."""
    torch.manual_seed(cfg["seed"])
    model = build(name).to(device)
    channels_last = device.type != "mps"
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    train = training.to_device((torch.from_numpy(split["x_train"]).unsqueeze(1), torch.from_numpy(split["y_train"])), device)
    test = training.to_device((torch.from_numpy(split["x_test"]).unsqueeze(1), torch.from_numpy(split["y_test"])), device)
    opt, sched = make_optimizer(model, cfg, training.batches_per_epoch(len(train[0]), cfg["batch_size"]))
    history = training.fit(model, make_step(cfg, cfg["seed"], channels_last), train, test, epochs=cfg["epochs"],
                           optimizer=opt, scheduler=sched, batch_size=cfg["batch_size"], device=device,
                           seed=cfg["seed"], amp=use_amp(cfg["amp"], device), name=f"train_classifier@{name}",
                           on_epoch=on_epoch)
    return model, history


@torch.no_grad()
def predict(model: torch.nn.Module, images: np.ndarray, device: torch.device, batch_size: int = 1000,
            amp: bool = False) -> np.ndarray:
    """Class predictions in the precision the model trained in, so they match its per-epoch test accuracy."""
    model.eval()
    x = torch.from_numpy(images).unsqueeze(1)
    with autocast(device, amp):
        out = [model(normalize(x[i:i + batch_size].to(device))).argmax(1).cpu() for i in range(0, len(x), batch_size)]
    return torch.cat(out).numpy()


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, n_classes: int = 10) -> np.ndarray:
    return np.bincount(labels * n_classes + predictions, minlength=n_classes ** 2).reshape(n_classes, n_classes)


def confusion_figure(path, matrix: np.ndarray, class_names, title: str) -> None:
    from latentlab.runtime.plotting import plt, save_figure

    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    rates = matrix / matrix.sum(1, keepdims=True)
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    for i in range(len(matrix)):
        for j in range(len(matrix)):
            ax.text(j, i, str(matrix[i, j]), ha="center", va="center", fontsize=7,
                    color="white" if rates[i, j] > 0.5 else "black")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(class_names)), class_names, fontsize=8)
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title)
    save_figure(path, fig)
