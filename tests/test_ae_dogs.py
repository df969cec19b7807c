"""Dog autoencoders: code shape, power normalisation, seeded channel noise, PSNR, the stages on a slice."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from conftest import assert_drawn, make_mini_project, run_stage
from latentlab.studies import ae_dogs
from latentlab.runtime import params
from latentlab.algorithms.image_quality import psnr
from latentlab.models.mlp_autoencoder import ACTIVATIONS
from latentlab.models.conv_autoencoder import ConvAutoencoder, power_normalize


def test_code_is_8x8x16_and_output_64x64():
    model = ConvAutoencoder([8, 8, 8]).eval()
    x = torch.rand(2, 3, 64, 64)
    assert model.encode(x).shape == (2, 16, 8, 8)
    assert model(x).shape == (2, 3, 64, 64)


def test_activation_and_batch_norm_are_params():
    def kinds(model):
        return {type(m).__name__ for m in model.modules()}

    assert {"SiLU", "BatchNorm2d"} <= kinds(ConvAutoencoder([8, 8, 8], activation="silu", batch_norm=True))
    plain = kinds(ConvAutoencoder([8, 8, 8], activation="relu", batch_norm=False))
    assert "ReLU" in plain and not {"SiLU", "BatchNorm2d"} & plain


def test_the_activation_param_allows_exactly_the_built_activations():
    import typing

    assert set(typing.get_args(params.TorchActivation)) == set(ACTIVATIONS)


def test_power_normalisation_gives_unit_rms():
    z = torch.randn(4, 16, 8, 8) * torch.tensor([0.1, 1.0, 5.0, 50.0])[:, None, None, None]
    rms = power_normalize(z).pow(2).mean(dim=(1, 2, 3)).sqrt()
    torch.testing.assert_close(rms, torch.ones(4))


def test_channel_noise_is_seeded():
    model = ConvAutoencoder([8, 8, 8]).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        a = model(x, 0.1, torch.Generator().manual_seed(0))
        b = model(x, 0.1, torch.Generator().manual_seed(0))
        c = model(x, 0.1, torch.Generator().manual_seed(1))
        clean = model(x)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, clean)


def test_normalised_code_without_noise_is_deterministic_and_scale_free():
    model = ConvAutoencoder([8, 8, 8]).eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        z = model.encode(x, normalize=True)
        torch.testing.assert_close(z.pow(2).mean(dim=(1, 2, 3)), torch.ones(2))
        torch.testing.assert_close(model(x, 0.0, normalize=True), model.decode(z))


def test_a_short_training_lowers_the_loss():
    torch.manual_seed(0)
    images = (torch.rand(64, 3, 8, 8).repeat_interleave(8, 2).repeat_interleave(8, 3) * 255).to(torch.uint8)
    split = {"x_train": images.numpy(), "x_test": images[:16].numpy()}
    cfg = {"widths": [8, 8, 8], "activation": "silu", "batch_norm": True, "batch_size": 16, "amp": False, "seed": 0,
           "noisy": {"epochs": 3, "lr": 0.01, "warmup_epochs": 0.5}, "base": {"epochs": 1, "lr": 0.01, "warmup_epochs": 0}}
    model, history = ae_dogs.fit(cfg, split, torch.device("cpu"), 0.1, name="t")
    losses = [row["train_loss"] for row in history.rows]
    assert len(losses) == 3 and losses[-1] < losses[0] and history.images_per_s > 0  # the noisy model's epochs
    _, warm = ae_dogs.fit(cfg, split, torch.device("cpu"), 0.1, init=model.state_dict(), name="t")
    assert warm.rows[0]["train_loss"] < history.rows[0]["train_loss"]  # started from `init`, not from scratch


def test_batch_norm_statistics_are_recomputed_over_the_data():
    torch.manual_seed(0)
    model = ConvAutoencoder([8, 8, 8])
    images = torch.randint(0, 256, (64, 3, 64, 64), dtype=torch.uint8)
    ae_dogs.recalibrate_batch_norm(model, ae_dogs.make_step(0.0, 0, True), (images,), 16, torch.device("cpu"), False)
    conv, norm = model.encoder[0][0], model.encoder[0][1]
    with torch.no_grad():
        features = conv(images.float() / 255)
    # the plain mean over all 64 images, not an exponential average weighted to the last batch
    torch.testing.assert_close(norm.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-4, atol=1e-5)
    assert norm.momentum == 0.1 and not model.training


def test_psnr_of_a_known_error():
    ref = torch.zeros(3, 3, 8, 8)
    assert math.isclose(psnr(ref, ref + 0.1).mean().item(), 20.0, rel_tol=1e-5)  # MSE 0.01 -> 20 dB
    assert psnr(ref, ref).min() > 100


def test_gaussian_samples_match_the_fitted_moments():
    rng = np.random.default_rng(0)
    codes = (rng.standard_normal((2000, 2, 2, 2)) * 3 + 1).astype(np.float32)
    draws = ae_dogs.gaussian_samples(codes, 4000, seed=0)
    assert draws.shape == (4000, 2, 2, 2)
    assert abs(draws.mean() - 1) < 0.1 and abs(draws.std() - 3) < 0.15


@pytest.fixture(scope="module")
def dog_project(prepared, tmp_path_factory):
    root = make_mini_project(tmp_path_factory.mktemp("dogs") / "proj", prepared, {
        "ae_dogs.widths": [8, 8, 8], "ae_dogs.base.epochs": 2, "ae_dogs.noisy.epochs": 1,
        "ae_dogs.noise_std": [0.1], "ae_dogs.latent.n_fit": 40}, {"dogs": 200})
    results = [run_stage(root, script, *args) for script, args in (
        ("train_ae_dogs.py", ()), ("train_ae_dogs_noisy.py", ("0.1",)), ("psnr.py", ()), ("ae_dogs_latent.py", ()))]
    return root, results


@pytest.mark.slow
def test_dog_stages_end_to_end(dog_project):
    root, results = dog_project
    for result in results:
        assert result.returncode == 0, result.stderr
    curve = (root / "plots/ae_dogs/base.csv").read_text().splitlines()
    assert len(curve) == 3 and float(curve[2].split(",")[1]) < float(curve[1].split(",")[1])
    psnr_metrics = json.loads((root / "metrics/psnr.json").read_text())["sigma_0.1"]
    assert psnr_metrics["psnr_original_vs_clean"] >= psnr_metrics["psnr_original_vs_noisy"] - 0.5
    assert psnr_metrics["psnr_clean_vs_noisy"] > 10
    for figure in ("figures/psnr/psnr_vs_noise.png", "figures/ae_dogs/latent_channels.png",
                   "figures/ae_dogs/latent_experiments.png", "figures/ae_dogs/base_reconstructions.png"):
        assert_drawn(root / figure)


def test_a_noise_level_not_in_params_is_refused(tmp_path):
    root = make_mini_project(tmp_path / "proj")
    result = run_stage(root, "train_ae_dogs_noisy.py", "0.3")
    assert result.returncode == 2 and "noise_std 0.3 is not listed in params.yaml ae_dogs.noise_std" in result.stderr
