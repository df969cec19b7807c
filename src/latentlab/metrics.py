"""Quality measures shared by stages."""

from __future__ import annotations

import torch



def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB (first dim = images), values in [0, data_range]."""
    mse = (reference.float() - estimate.float()).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10.0 * torch.log10(data_range ** 2 / mse)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return (logits.argmax(1) == labels).float().mean()

