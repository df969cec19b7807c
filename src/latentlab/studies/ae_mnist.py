"""MNIST autoencoder variants: training, evaluation (BCE, MSE, PSNR) and their figures."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from latentlab.models import training
from latentlab.runtime.device import use_amp
from latentlab.algorithms.image_quality import psnr, psnr_from_mse
from latentlab.models.mlp_autoencoder import MLPAutoencoder


def add_noise(clean: torch.Tensor, noise_factor: float, generator: torch.Generator) -> torch.Tensor:
    """clean + N(0, 1)·noise_factor, clamped back to [0, 1] (the study's corruption)."""
    noise = torch.randn(clean.shape, generator=generator).to(clean.device)
    return (clean + noise_factor * noise).clamp_(0.0, 1.0)


def make_step(noise_factor: float, seed: int):
    """Reconstruct the clean image from (possibly noisy) input; fresh noise every batch, seeded."""
    generator = torch.Generator().manual_seed(seed + 1)

    def step(model, batch, train):
        clean = batch[0].float().div_(255.0).flatten(1)
        inputs = add_noise(clean, noise_factor, generator) if noise_factor else clean
        logits = model(inputs)
        loss = F.binary_cross_entropy_with_logits(logits, clean)
        with torch.no_grad():
            mse = (torch.sigmoid(logits) - clean).pow(2).mean(1)
        return loss, {"mse": mse.sum(), "psnr": psnr_from_mse(mse).sum()}

    return step


def make_optimizer(model: torch.nn.Module, cfg: dict, device: torch.device) -> torch.optim.Adam:
    """Adam as one fused kernel where PyTorch has it: for these small MLPs the update is a third of a
    step, and the fused one made a step 1.5x faster here (benchmarks/bench_ae_mnist.py)."""
    return torch.optim.Adam(model.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"],
                            fused=device.type in ("cpu", "cuda") or None)


def fit(cfg: dict, split: dict[str, np.ndarray], device: torch.device, name: str, on_epoch=None):
    torch.manual_seed(cfg["seed"])
    model = MLPAutoencoder(cfg["hidden"], cfg["bottleneck"], activation=cfg["activation"]).to(device)
    opt = make_optimizer(model, cfg, device)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg["epochs"])
    train = training.to_device((torch.from_numpy(split["x_train"]),), device)
    test = training.to_device((torch.from_numpy(split["x_test"]),), device)
    history = training.fit(model, make_step(cfg["noise_factor"], cfg["seed"]), train, test, epochs=cfg["epochs"],
                           optimizer=opt, scheduler=sched, batch_size=cfg["batch_size"], device=device,
                           seed=cfg["seed"], amp=use_amp(cfg["amp"], device), name=name, on_epoch=on_epoch)
    return model, history


@torch.no_grad()
def evaluate(model: MLPAutoencoder, images: np.ndarray, noise_factor: float, seed: int, device: torch.device) -> dict:
    """Test-set BCE, MSE and PSNR of the reconstruction; for denoising also the noisy input's PSNR."""
    model.eval()
    clean = torch.from_numpy(images).float().div_(255.0).flatten(1).to(device)
    inputs = add_noise(clean, noise_factor, torch.Generator().manual_seed(seed + 2)) if noise_factor else clean
    logits = torch.cat([model(inputs[i:i + 2000]) for i in range(0, len(inputs), 2000)])
    recon = torch.sigmoid(logits)
    out = {"test_bce": F.binary_cross_entropy_with_logits(logits, clean).item(),
           "test_mse": (recon - clean).pow(2).mean().item(),
           "test_psnr": psnr(clean, recon).mean().item()}
    if noise_factor:
        out["noisy_input_psnr"] = psnr(clean, inputs).mean().item()
        out["psnr_gain"] = out["test_psnr"] - out["noisy_input_psnr"]
    return {k: round(v, 4) for k, v in out.items()}, inputs.cpu().view(-1, 28, 28).numpy(), recon.cpu().view(-1, 28, 28).numpy()


@torch.no_grad()
def encode(model: MLPAutoencoder, images: np.ndarray, device: torch.device) -> np.ndarray:
    model.eval()
    x = torch.from_numpy(images).float().div_(255.0).to(device)
    return torch.cat([model.encode(x[i:i + 2000]) for i in range(0, len(x), 2000)]).cpu().numpy()


@torch.no_grad()
def decode_grid(model: MLPAutoencoder, lo: float, hi: float, size: int, device: torch.device) -> np.ndarray:
    """Decoder output over a uniform size x size grid of the 2-D latent square [lo, hi]², top row = high z2."""
    model.eval()
    axis = torch.linspace(lo, hi, size)
    z2, z1 = torch.meshgrid(axis.flip(0), axis, indexing="ij")
    z = torch.stack([z1.flatten(), z2.flatten()], 1).to(device)
    return model.decode(z).cpu().numpy().reshape(size, size, 28, 28)


def grid_figure(path, tiles: np.ndarray, lo: float, hi: float, title: str) -> None:
    from latentlab.runtime.plotting import plt, save_figure

    size = tiles.shape[0]
    canvas = tiles.transpose(0, 2, 1, 3).reshape(size * 28, size * 28)
    fig, ax = plt.subplots(figsize=(7, 7))
    ax.imshow(canvas, cmap="gray", extent=(lo, hi, lo, hi), vmin=0, vmax=1)
    ax.set_xlabel("z1"), ax.set_ylabel("z2"), ax.set_title(title)
    save_figure(path, fig)


def scatter_axes(ax, codes: np.ndarray, labels: np.ndarray, title: str) -> None:
    sc = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=2, alpha=0.6, rasterized=True)
    ax.legend(*sc.legend_elements(), title="digit", fontsize=7, loc="upper right", markerscale=0.8)
    ax.set_xlabel("z1"), ax.set_ylabel("z2"), ax.set_title(title)


def scatter_figure(path, panels: list[tuple[np.ndarray, np.ndarray, str]]) -> None:
    from latentlab.runtime.plotting import plt, save_figure

    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 6), squeeze=False)
    for ax, (codes, labels, title) in zip(axes[0], panels):
        scatter_axes(ax, codes, labels, title)
    save_figure(path, fig)
