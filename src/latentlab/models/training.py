"""The one training loop every PyTorch model here goes through.

Data stays in memory as tensors (uint8 images on the target device); each epoch draws a seeded
permutation and slices batches from it, so there is no DataLoader, no per-sample Python and no
worker processes to pay for on a 2-core CPU. A model-specific `step` turns a batch into a loss and
per-batch sums (correct predictions, KL, ...); `fit` averages those per sample and per epoch.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
from tqdm.auto import tqdm

from latentlab.runtime import io
from latentlab.runtime.device import autocast, grad_scaler
from latentlab.runtime.errors import LatentlabError

# step(model, batch, train) -> (loss to backpropagate, {name: sum over the batch})
Step = Callable[[torch.nn.Module, Sequence[torch.Tensor], bool], tuple[torch.Tensor, dict[str, torch.Tensor]]]


@dataclass
class History:
    """Per-epoch rows like {"epoch": 1, "train_loss": .., "test_loss": .., "train_acc": ..}."""

    rows: list[dict[str, float]] = field(default_factory=list)
    train_seconds: float = 0.0
    train_images: int = 0

    @property
    def images_per_s(self) -> float:
        return self.train_images / self.train_seconds if self.train_seconds else 0.0

    def frame(self):
        import pandas as pd

        return pd.DataFrame(self.rows)

    def speed(self) -> dict[str, float]:
        """Timings go to MLflow only: the metrics files hold what the same params always give."""
        return {"train_seconds": round(self.train_seconds, 1), "images_per_s": round(self.images_per_s)}


def save(model: torch.nn.Module, history: History, model_path, curves_path, digits: int = 5) -> None:
    """A trained model's weights (on the CPU, so any machine loads them) and its per-epoch curves."""
    io.save_torch(model_path, {k: v.cpu() for k, v in model.state_dict().items()})
    io.save_csv(curves_path, history.frame().round(digits))


def check_finite(name: str, epoch: int, loss: float) -> None:
    """A NaN or infinite loss ends the stage with a clear line instead of training on garbage."""
    if not math.isfinite(loss):
        raise LatentlabError(f"{name}: training loss became {loss} at epoch {epoch}; "
                             "lower the learning rate (or check the inputs) and re-run")


def to_device(tensors: Sequence[torch.Tensor], device: torch.device) -> tuple[torch.Tensor, ...]:
    return tuple(t.to(device, non_blocking=True) for t in tensors)


def _sums(model, step, data, batch_size, train, order, optimizer, scaler, amp, device, bar_desc, batch_scheduler=None):
    n = data[0].shape[0]
    totals: dict[str, torch.Tensor] = {}
    batches = range(0, n, batch_size)
    bar = tqdm(batches, desc=bar_desc, leave=False, unit="batch", mininterval=1.0, disable=None)
    for start in bar:
        idx = order[start:start + batch_size] if order is not None else slice(start, start + batch_size)
        batch = tuple(t[idx] for t in data)
        with autocast(device, amp):
            loss, sums = step(model, batch, train)
        if train:
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            if batch_scheduler is not None:
                batch_scheduler.step()
        count = batch[0].shape[0]
        sums = {"loss": loss.detach().float() * count, **sums}
        for key, value in sums.items():
            totals[key] = totals.get(key, 0.0) + value.detach().float()
    return {key: float(value) / n for key, value in totals.items()}


class BatchSchedule(torch.optim.lr_scheduler.LambdaLR):
    """A learning-rate schedule over optimizer steps rather than epochs: `fit` steps it after every batch."""


def cosine_schedule(optimizer: torch.optim.Optimizer, epochs: int, batches_per_epoch: int,
                    warmup_epochs: float = 0.0) -> BatchSchedule:
    """A linear warm-up over `warmup_epochs` (fractions allowed), then a cosine to zero at the last batch:
    it anneals smoothly instead of in epoch-long stairs."""
    total, warmup = epochs * batches_per_epoch, round(warmup_epochs * batches_per_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1.0 + math.cos(math.pi * progress))
    return BatchSchedule(optimizer, factor)


def batches_per_epoch(n: int, batch_size: int) -> int:
    return math.ceil(n / batch_size)


def evaluate(model: torch.nn.Module, step: Step, data: Sequence[torch.Tensor], batch_size: int,
             device: torch.device, amp: bool = False) -> dict[str, float]:
    """Per-sample means of the step's sums over `data`, in eval mode and without gradients."""
    model.eval()
    with torch.no_grad():
        return _sums(model, step, data, batch_size, False, None, None, None, amp, device, "eval")


def fit(model: torch.nn.Module, step: Step, train: Sequence[torch.Tensor], test: Sequence[torch.Tensor] | None,
        *, epochs: int, optimizer: torch.optim.Optimizer, batch_size: int, device: torch.device,
        seed: int, scheduler=None, amp: bool = False, name: str = "train",
        on_epoch: Callable[[int, dict[str, float]], None] | None = None) -> History:
    """Train for `epochs`, evaluating on `test` after each; stops with a clear error on a NaN loss.

    `train`/`test` are tuples of tensors already on `device` (first dimension = samples).
    `scheduler` steps once an epoch, or after every optimizer step when it is a `BatchSchedule`.
    `on_epoch(epoch, row)` sees each finished row (tracking, checkpoints).
    """
    history = History()
    generator = torch.Generator(device="cpu").manual_seed(seed)
    scaler = grad_scaler(device, amp)
    per_batch = isinstance(scheduler, BatchSchedule)
    n = train[0].shape[0]
    for epoch in tqdm(range(1, epochs + 1), desc=name, unit="epoch", disable=None):
        model.train()
        order = torch.randperm(n, generator=generator).to(device)
        start = time.perf_counter()
        train_stats = _sums(model, step, train, batch_size, True, order, optimizer, scaler, amp, device,
                            f"epoch {epoch}", scheduler if per_batch else None)
        if device.type == "cuda":
            torch.cuda.synchronize()
        history.train_seconds += time.perf_counter() - start
        history.train_images += n
        check_finite(name, epoch, train_stats["loss"])
        if scheduler is not None and not per_batch:
            scheduler.step()
        row = {"epoch": epoch, **{f"train_{k}": v for k, v in train_stats.items()}}
        if test is not None:
            row.update({f"test_{k}": v for k, v in evaluate(model, step, test, max(batch_size, 512), device, amp).items()})
        history.rows.append(row)
        if on_epoch is not None:
            on_epoch(epoch, row)
    return history
