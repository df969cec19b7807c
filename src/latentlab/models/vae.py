"""Variational autoencoders for 32x32 RGB faces: `conv` (default) and `mlp` (the study's 3072-512-2·latent)."""

from __future__ import annotations

import torch
from torch import nn


def _down(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out), nn.LeakyReLU(0.2, True))


def _up(c_in, c_out):
    return nn.Sequential(nn.ConvTranspose2d(c_in, c_out, 4, 2, 1, bias=False), nn.BatchNorm2d(c_out),
                         nn.LeakyReLU(0.2, True))


class ConvVAE(nn.Module):
    """32→16→8→4 strided convs (width w, 2w, 4w), Gaussian posterior from the 4x4 map; mirrored decoder."""

    def __init__(self, latent_dim: int = 128, width: int = 64):
        super().__init__()
        self.latent_dim, w = latent_dim, width
        self.encoder = nn.Sequential(_down(3, w), _down(w, 2 * w), _down(2 * w, 4 * w), nn.Flatten())
        self.to_stats = nn.Linear(4 * w * 16, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, 4 * w * 16), nn.Unflatten(1, (4 * w, 4, 4)))
        self.decoder = nn.Sequential(nn.BatchNorm2d(4 * w), nn.LeakyReLU(0.2, True), _up(4 * w, 2 * w), _up(2 * w, w),
                                     nn.ConvTranspose2d(w, 3, 4, 2, 1))

    def encode(self, x):
        mu, logvar = self.to_stats(self.encoder(x)).chunk(2, dim=1)
        return mu, logvar.clamp(-12, 8)

    def decode_logits(self, z):
        return self.decoder(self.from_latent(z))

    def decode(self, z):
        return torch.sigmoid(self.decode_logits(z))

    def forward(self, x, generator: torch.Generator | None = None):
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype).to(mu.device)
        z = mu + eps * torch.exp(0.5 * logvar)
        return self.decode_logits(z), mu, logvar


class MLPVAE(ConvVAE):
    """The original study's VAE: 3072 → 512 → (μ, log σ²) of the latent, and latent → 512 → 3072."""

    def __init__(self, latent_dim: int = 128, width: int = 512):
        nn.Module.__init__(self)
        self.latent_dim = latent_dim
        self.encoder = nn.Sequential(nn.Flatten(), nn.Linear(3072, width), nn.ReLU(True))
        self.to_stats = nn.Linear(width, 2 * latent_dim)
        self.from_latent = nn.Sequential(nn.Linear(latent_dim, width), nn.ReLU(True))
        self.decoder = nn.Sequential(nn.Linear(width, 3072), nn.Unflatten(1, (3, 32, 32)))


def build(arch: str, latent_dim: int, width: int) -> ConvVAE:
    return {"conv": ConvVAE, "mlp": MLPVAE}[arch](latent_dim, width)
