"""Figures shared by several stages. Headless (Agg) and saved atomically through `io.save_figure`."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from latentlab.runtime.io import save_figure  # noqa: E402


def to_hwc(images: np.ndarray) -> np.ndarray:
    """(N, C, H, W) or (N, H, W) in [0, 1] or uint8 -> (N, H, W, C) floats in [0, 1] for imshow."""
    images = np.asarray(images)
    if images.dtype == np.uint8:
        images = images.astype(np.float32) / 255.0
    if images.ndim == 3:
        images = images[..., None]
    elif images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)
    return np.clip(images, 0.0, 1.0)


def image_grid(path, rows: list[np.ndarray], row_titles: list[str] | None = None, title: str | None = None,
               scale: float = 1.1) -> None:
    """One row of images per entry of `rows`, each row labelled on the left."""
    rows = [to_hwc(r) for r in rows]
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(len(rows), n_cols, figsize=(n_cols * scale, len(rows) * scale), squeeze=False)
    for i, row in enumerate(rows):
        for j in range(n_cols):
            ax = axes[i, j]
            ax.set_xticks([]), ax.set_yticks([])
            for spine in ax.spines.values():
                spine.set_visible(False)
            if j < len(row):
                img = row[j]
                ax.imshow(img[..., 0] if img.shape[-1] == 1 else img, cmap="gray", vmin=0, vmax=1)
        if row_titles:
            axes[i, 0].set_ylabel(row_titles[i], rotation=0, ha="right", va="center", fontsize=9)
    if title:
        fig.suptitle(title)
    save_figure(path, fig)


def mosaic(images: np.ndarray, cols: int) -> np.ndarray:
    """Images (N, C, H, W) or (N, H, W, C) tiled into one HWC picture, `cols` per row, on white."""
    import torch
    from torchvision.utils import make_grid

    tiles = torch.from_numpy(np.ascontiguousarray(to_hwc(images).transpose(0, 3, 1, 2)))
    return make_grid(tiles, nrow=cols, padding=1, pad_value=1.0).permute(1, 2, 0).numpy()


def mosaics_side_by_side(path, panels: list[tuple[str, np.ndarray]], cols: int, title: str | None = None) -> None:
    """Several image sets next to each other, one titled mosaic each: for comparing samplers by eye."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.6), squeeze=False)
    for ax, (label, images) in zip(axes[0], panels):
        ax.imshow(mosaic(images, cols).clip(0, 1), interpolation="nearest")
        ax.set_title(label, fontsize=10), ax.set_axis_off()
    if title:
        fig.suptitle(title)
    save_figure(path, fig)


def curve_metrics(frame) -> list[str]:
    """The metric names of a history frame: `m` for every train_<m> or test_<m> column."""
    names = [c.split("_", 1)[1] for c in frame.columns if c.startswith(("train_", "test_"))]
    return list(dict.fromkeys(names))
