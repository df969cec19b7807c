"""MNIST autoencoders: shapes, seeded noise, a short real stage run, and params refused before work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_drawn, make_mini_project, run_stage
from latentlab.studies import ae_mnist
from latentlab.models.mlp_autoencoder import MLPAutoencoder


def test_shapes_and_latent_dims():
    model = MLPAutoencoder([64, 32], bottleneck=2)
    x = torch.rand(5, 28, 28)
    assert model.encode(x).shape == (5, 2)
    assert model(x).shape == (5, 784)
    assert model.decode(torch.zeros(3, 2)).shape == (3, 28, 28)


def test_activation_is_a_param():
    layers = lambda model: {type(m).__name__ for m in model.modules()}
    assert "SiLU" in layers(MLPAutoencoder([8, 8], 2, activation="silu")) - layers(MLPAutoencoder([8, 8], 2))


def test_noise_is_seeded_and_clamped():
    clean = torch.rand(4, 784)
    a = ae_mnist.add_noise(clean, 0.4, torch.Generator().manual_seed(0))
    b = ae_mnist.add_noise(clean, 0.4, torch.Generator().manual_seed(0))
    c = ae_mnist.add_noise(clean, 0.4, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 1 and (a - clean).abs().mean() > 0.1


def test_latent_grid_covers_the_square():
    model = MLPAutoencoder([16], bottleneck=2)
    tiles = ae_mnist.decode_grid(model, -5, 5, 4, torch.device("cpu"))
    assert tiles.shape == (4, 4, 28, 28) and 0 <= tiles.min() and tiles.max() <= 1


@pytest.fixture(scope="module")
def denoise_run(prepared, tmp_path_factory):
    root = make_mini_project(tmp_path_factory.mktemp("ae") / "proj", prepared,
                             {"ae_mnist.variants.denoise.epochs": 3, "ae_mnist.variants.denoise.hidden": [128, 64]},
                             {"mnist": 3000})
    return root, run_stage(root, "train_ae_mnist.py", "denoise")


@pytest.mark.slow
def test_denoise_stage_end_to_end(denoise_run):
    root, result = denoise_run
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("latentlab train_ae_mnist: denoise: test PSNR")
    metrics = json.loads((root / "metrics/ae_mnist/denoise.json").read_text())
    assert metrics["psnr_gain"] > 0 and metrics["test_psnr"] > metrics["noisy_input_psnr"]
    curve = (root / "plots/ae_mnist/denoise.csv").read_text().splitlines()
    assert curve[0].startswith("epoch,train_loss") and len(curve) == 4
    losses = [float(line.split(",")[1]) for line in curve[1:]]
    assert losses[-1] < losses[0]
    for figure in ("reconstructions", "latent", "latent_grid"):
        assert_drawn(root / f"figures/ae_mnist/denoise/{figure}.png")
    codes = np.load(root / "models/ae_mnist/denoise_codes.npz", allow_pickle=False)
    assert codes["codes"].shape == (3000, 2)


