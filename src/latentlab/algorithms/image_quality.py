"""Quality measures shared by stages."""

from __future__ import annotations

import numpy as np
import torch


def psnr(reference: torch.Tensor, estimate: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB (first dim = images), values in [0, data_range]."""
    return psnr_from_mse((reference.float() - estimate.float()).pow(2).flatten(1).mean(1), data_range)


def psnr_from_mse(mse: torch.Tensor, data_range: float = 1.0) -> torch.Tensor:
    """PSNR in dB of per-image mean squared errors; a perfect image counts as 120 dB, not infinity."""
    return 10.0 * torch.log10(data_range ** 2 / mse.clamp_min(1e-12))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (rows): the FID formula,
    |μa − μb|² + Tr(Σa + Σb − 2 (Σa Σb)^½), with Tr((Σa Σb)^½) taken as Tr((Σa^½ Σb Σa^½)^½), whose
    argument is symmetric, so `eigh` gives it stably where a general matrix square root may not."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(cov_a)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
    return float(((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)
