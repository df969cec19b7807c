"""The 64x64 dog autoencoder: three conv+pool blocks and a 1x1 conv to an 8x8x16 code; a
sub-pixel (PixelShuffle) upsampling decoder that mirrors it.

Each conv is followed by an optional BatchNorm and the activation param. Measured on the dog photos
(held-out PSNR after 6 epochs, widths [32, 64, 128]): ReLU 23.07 dB, SiLU 24.54, ReLU + BN 24.60,
SiLU + BN 25.21, as good as 24 epochs of plain ReLU (25.09). An extra conv at 8x8 in encoder and
decoder (24.61) or a conv at 64x64 before the output (24.16) did worse at more cost.

With `noise_std` > 0 the code is power-normalised (divided by its root mean square, per image) and
N(0, σ²) noise is added: the channel model of the study's noise-regularised autoencoders.
"""

from __future__ import annotations

import torch
from torch import nn

from latentlab.models.mlp_autoencoder import ACTIVATIONS


def _normed(layers: list[nn.Module], c_out: int, activation: str, batch_norm: bool) -> nn.Sequential:
    return nn.Sequential(*layers, *([nn.BatchNorm2d(c_out)] if batch_norm else []), ACTIVATIONS[activation]())


def power_normalize(z: torch.Tensor) -> torch.Tensor:
    """Scale each code to unit mean square, so a noise σ means the same SNR for every image."""
    return z / z.pow(2).mean(dim=(1, 2, 3), keepdim=True).add(1e-8).sqrt()


def _up(c_in: int, c_out: int) -> list[nn.Module]:
    """2x upsampling by sub-pixel convolution: the 3x3 conv runs at the low resolution, then
    PixelShuffle rearranges 4·c_out channels into a 2x larger map (4x cheaper than conv-after-resize)."""
    return [nn.Conv2d(c_in, 4 * c_out, 3, padding=1), nn.PixelShuffle(2)]


class ConvAutoencoder(nn.Module):
    def __init__(self, widths: list[int], latent_channels: int = 16, activation: str = "silu",
                 batch_norm: bool = True):
        super().__init__()
        c1, c2, c3 = widths

        def conv(c_in, c_out):
            return _normed([nn.Conv2d(c_in, c_out, 3, padding=1, bias=not batch_norm)], c_out, activation, batch_norm)

        def up(c_in, c_out):
            return _normed(_up(c_in, c_out), c_out, activation, batch_norm)

        self.encoder = nn.Sequential(
            conv(3, c1), nn.MaxPool2d(2),         # 64 -> 32
            conv(c1, c2), nn.MaxPool2d(2),        # 32 -> 16
            conv(c2, c3), nn.MaxPool2d(2),        # 16 -> 8
            nn.Conv2d(c3, latent_channels, 1),    # 8x8x16 code
        )
        self.decoder = nn.Sequential(
            conv(latent_channels, c3),
            up(c3, c2),                           # 8 -> 16
            up(c2, c1),                           # 16 -> 32
            *_up(c1, 3),                          # 32 -> 64, RGB logits
        )

    def encode(self, x: torch.Tensor, normalize: bool = False) -> torch.Tensor:
        z = self.encoder(x)
        return power_normalize(z) if normalize else z

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.decoder(z))

    def forward(self, x: torch.Tensor, noise_std: float = 0.0, generator: torch.Generator | None = None,
                normalize: bool | None = None):
        """Reconstruct x; the code is power-normalised when `normalize` (default: whenever noise_std > 0)."""
        z = self.encode(x, normalize=noise_std > 0 if normalize is None else normalize)
        if noise_std > 0:
            z = z + noise_std * torch.randn(z.shape, generator=generator, dtype=z.dtype).to(z.device)
        return self.decode(z)
