"""The face VAE: interpolation endpoints, pair selection, a short real stage run, params refused before work."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from conftest import assert_drawn, make_mini_project, run_stage
from latentlab.studies import vae
from latentlab.runtime.errors import LatentlabError
from latentlab.models.vae import build

CPU = torch.device("cpu")


@pytest.mark.parametrize("arch", ["conv", "mlp"])
def test_interpolation_endpoints_decode_the_two_encoded_faces(arch):
    torch.manual_seed(0)
    model = build(arch, latent_dim=8, width=16)
    faces = np.random.default_rng(0).integers(0, 256, (2, 3, 32, 32), dtype=np.uint8)
    strip = vae.interpolate(model, faces[0], faces[1], [0.0, 0.5, 1.0], CPU)
    recon = vae.reconstruct(model, faces, CPU)
    assert strip.shape == (3, 3, 32, 32)
    np.testing.assert_allclose(strip[0], recon[0], atol=1e-5)
    np.testing.assert_allclose(strip[-1], recon[1], atol=1e-5)
    assert not np.allclose(strip[1], strip[0])


def test_auto_pairs_are_male_female_heldout_faces():
    gender = np.array([0, 1, 0, 0, 1, 1, 0, 1])
    dataset = {"x": np.zeros((8, 3, 32, 32), np.uint8), "gender": gender}
    heldout = np.array([1, 2, 3, 5, 7])
    pairs = vae.resolve_pairs({"pairs": "auto", "auto_pairs": 3}, dataset, heldout)
    assert pairs == [(2, 1), (3, 5)]
    assert all(gender[m] == 0 and gender[f] == 1 for m, f in pairs)
    simplified = vae.resolve_pairs({"pairs": "auto", "auto_pairs": 3}, {"x": dataset["x"]}, heldout)
    assert simplified == [(1, 2), (100, 500), (650, 900)]
    with pytest.raises(LatentlabError, match=r"vae.pairs\[0\]\[1\] = 8 is out of range; allowed: 0..7"):
        vae.resolve_pairs({"pairs": [[0, 8]], "dataset": "lfw4151"}, dataset, heldout)


def test_split_is_seeded_and_disjoint():
    a_train, a_hold = vae.split_indices(100, 0.2, 0)
    b_train, b_hold = vae.split_indices(100, 0.2, 0)
    assert len(a_hold) == 20 and not set(a_train) & set(a_hold)
    assert np.array_equal(a_hold, b_hold) and not np.array_equal(a_hold, vae.split_indices(100, 0.2, 1)[1])


@pytest.fixture(scope="module")
def vae_run(prepared, tmp_path_factory):
    root = make_mini_project(tmp_path_factory.mktemp("vae") / "proj", prepared,
                             {"vae.epochs": 3, "vae.min_steps": 0, "vae.width": 16, "vae.latent_dim": 16,
                              "vae.samples.feature_dims": 16, "vae.samples.gmm_components": 3,
                              "vae.sweep_kl_weights": [0.5]}, {"lfw4151": 600})
    return root, run_stage(root, "train_vae.py")


@pytest.mark.slow
def test_vae_stage_end_to_end(vae_run):
    root, result = vae_run
    assert result.returncode == 0, result.stderr
    metrics = json.loads((root / "metrics/vae.json").read_text())
    assert set(metrics) >= {"heldout_psnr", "heldout_kl", "heldout_elbo"} and metrics["heldout_psnr"] > 10
    curve = (root / "plots/vae/curves.csv").read_text().splitlines()
    header = curve[0].split(",")
    assert {"train_recon", "test_recon", "train_kl", "test_kl", "train_loss", "test_loss"} <= set(header)
    losses = [float(line.split(",")[header.index("train_loss")]) for line in curve[1:]]
    assert len(losses) == 3 and losses[-1] < losses[0]
    for figure in ("reconstructions", "interpolations", "samples"):
        assert_drawn(root / f"figures/vae/{figure}.png")
    assert 0 < metrics["fd_reconstruction"] and 0 < metrics["fd_fitted"] and 0 < metrics["fd_prior"]


@pytest.mark.slow
def test_sweep_point_and_tradeoff_table(vae_run):
    """A train_vae_sweep@β point writes only its metrics; vae_tradeoff lines it up with the default run."""
    root, result = vae_run
    assert result.returncode == 0, result.stderr
    sweep = run_stage(root, "train_vae.py", "0.5")
    assert sweep.returncode == 0, sweep.stderr
    point = json.loads((root / "metrics/vae_sweep/beta_0.5.json").read_text())
    assert point["kl_weight"] == 0.5 and {"heldout_psnr", "fd_prior", "fd_fitted"} <= set(point)
    default = json.loads((root / "metrics/vae.json").read_text())
    assert point["heldout_kl"] < default["heldout_kl"]  # a 25x larger β pulls the codes towards the prior
    tradeoff = run_stage(root, "vae_tradeoff.py")
    assert tradeoff.returncode == 0, tradeoff.stderr
    table = (root / "plots/vae_tradeoff/tradeoff.csv").read_text().splitlines()
    assert table[0].startswith("kl_weight,heldout_psnr") and [r.split(",")[0] for r in table[1:]] == ["0.02", "0.5"]
    assert_drawn(root / "figures/vae_tradeoff/tradeoff.png", 400, 300)
    unknown = run_stage(root, "train_vae.py", "0.3")
    assert unknown.returncode == 2 and "β one of params.yaml vae.sweep_kl_weights [0.5]" in unknown.stderr


def test_fitted_sampler_is_deterministic_for_a_seed():
    torch.manual_seed(0)
    model = build("conv", latent_dim=8, width=16)
    codes = np.random.default_rng(0).normal(size=(300, 8)) * [3, 1, 1, 1, 1, 1, 1, 0.1]
    first = vae.sample_fitted(model, vae.fit_code_density(codes, 3, seed=7), 20, CPU)
    again = vae.sample_fitted(model, vae.fit_code_density(codes, 3, seed=7), 20, CPU)
    other = vae.sample_fitted(model, vae.fit_code_density(codes, 3, seed=8), 20, CPU)
    assert first.shape == (20, 3, 32, 32) and np.array_equal(first, again) and not np.allclose(first, other)


def test_frechet_distance_is_zero_for_identical_sets_and_grows_with_noise():
    from latentlab.algorithms.image_quality import frechet_distance

    faces = np.random.default_rng(0).normal(size=(500, 16)) @ np.random.default_rng(1).normal(size=(16, 16))
    assert abs(frechet_distance(faces, faces)) < 1e-8
    noise = np.random.default_rng(2).normal(size=faces.shape)
    distances = [frechet_distance(faces, faces + s * noise) for s in (0.1, 0.5, 1.0, 2.0)]
    assert 0 < distances[0] < distances[1] < distances[2] < distances[3]
    shifted = frechet_distance(faces, faces + 1.0)  # a mean shift of 1 in each of 16 dims costs 16
    assert shifted == pytest.approx(16.0, rel=1e-6)


def test_stage_with_bad_params_fails_before_work(prepared, tmp_path):
    """The pairs' range depends on the dataset, so the stage checks it: one line, nothing written."""
    root = make_mini_project(tmp_path / "proj", prepared, {"vae.pairs": [[0, 5000]]}, {"lfw4151": 600})
    result = run_stage(root, "train_vae.py")
    assert result.returncode == 2, result.stderr
    assert "vae.pairs[0][1] = 5000 is out of range; allowed: 0..599" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (root / "models").exists()


def test_small_datasets_get_more_epochs_to_reach_min_steps():
    cfg = {"epochs": 16, "min_steps": 900, "batch_size": 64}
    assert vae.epochs_for(cfg, 3736) == 16          # lfw4151's training split: 59 steps/epoch, 944 steps
    assert vae.epochs_for(cfg, 900) == 60           # lfw_simplified's: 15 steps/epoch
    assert vae.epochs_for({**cfg, "min_steps": 0}, 900) == 16


def test_sample_mosaics_tile_every_image_in_place_on_white():
    from latentlab.runtime import plotting

    images = np.random.default_rng(0).random((5, 3, 8, 8)).astype(np.float32)
    canvas = plotting.mosaic(images, cols=4)
    assert canvas.shape == (2 * 9 + 1, 4 * 9 + 1, 3)  # 1-pixel gaps and border
    for i, image in enumerate(images):
        r, c = divmod(i, 4)
        np.testing.assert_array_equal(canvas[1 + 9 * r:9 + 9 * r, 1 + 9 * c:9 + 9 * c], image.transpose(1, 2, 0))
    assert (canvas[10:, 19:] == 1.0).all()  # where no image is: white
