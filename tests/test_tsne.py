"""Our t-SNE at scale: the interpolated repulsion against the exact one, blocked searches, determinism,
the exact/FFT choice, and the full-dataset stage on a slice of the real data."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from conftest import assert_drawn, make_mini_project, run_stage
from latentlab.studies import embeddings
from latentlab.runtime import io
from latentlab.algorithms import tsne
from latentlab.models import classifiers


def _blobs(n=600, d=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((5, d)) * 6
    labels = rng.integers(0, 5, n)
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


def _repulsion(z, push, Y):
    return (push[:, :1] * Y - push[:, 1:]) / z


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_attraction_matches_a_float64_sum_over_the_pairs(dims):
    """The per-row reduceat (and, in 2-D, the complex view of the points) gives Σ_j p_ij w_ij (y_i − y_j)."""
    X, _ = _blobs(n=400)
    rows, cols, vals = tsne.joint_probabilities(X, 20.0)
    Y = (np.random.default_rng(1).standard_normal((400, dims)) * 15).astype(np.float32)
    force, w = tsne._Attraction(400, dims, rows, cols, vals)(Y)
    delta = Y[rows].astype(np.float64) - Y[cols]
    w64 = 1.0 / (1.0 + (delta ** 2).sum(1))
    expected = np.zeros((400, dims))
    np.add.at(expected, rows, (vals * w64)[:, None] * delta)
    np.testing.assert_allclose(w, w64, rtol=1e-6)
    assert force.shape == (400, dims)
    assert np.abs(force - expected).max() <= 1e-5 * np.abs(expected).max()


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_attraction_in_blocks_shared_by_two_threads_gives_the_same_bytes(dims):
    """However the pairs are cut into blocks and whichever thread takes which, each row is summed as in
    one pass over all pairs, so the map's bytes do not depend on how the two threads met."""
    X, _ = _blobs(n=400)
    rows, cols, vals = tsne.joint_probabilities(X, 20.0)
    Y = (np.random.default_rng(2).standard_normal((400, dims)) * 15).astype(np.float32)
    whole = tsne._Attraction(400, dims, rows, cols, vals, block_pairs=len(vals))
    force, w = whole(Y)
    shared = tsne._Attraction(400, dims, rows, cols, vals, block_pairs=300)
    assert len(whole.blocks) == 1 and len(shared.blocks) > 20
    for _ in range(3):
        shared.start(Y)
        with ThreadPoolExecutor(1) as second:
            other = second.submit(shared.work)
            shared.work()
            other.result()
        got, got_w = shared.result()
        assert got.tobytes() == force.tobytes() and got_w.tobytes() == w.tobytes()


@pytest.mark.parametrize("dims, scale", [(2, 1.0), (2, 10.0), (2, 40.0), (1, 30.0)])
def test_interpolated_repulsion_matches_the_exact_one(dims, scale):
    """openTSNE's grid (3 nodes per interval of width ≤ 1) is within a few percent; finer grids converge."""
    n = 1500
    Y = (np.random.default_rng(dims).standard_normal((n, dims)) * scale).astype(np.float32)
    z, push = tsne._Repulsion(n, dims)(Y)
    exact = _repulsion(z, push, Y)
    errors = []
    for interval in (1.0, 0.25):
        z_fft, push_fft = tsne._Interpolation(interval=interval)(Y)
        got = _repulsion(z_fft, push_fft, Y)
        errors.append(np.linalg.norm(got - exact) / np.linalg.norm(exact))
        assert abs(z_fft / z - 1) < (0.03 if interval == 1.0 else 1e-3)
    assert errors[0] < 0.06 and errors[1] < 2e-3
    if scale >= 10:  # smaller embeddings get the 50-interval minimum, finer than 0.25, either way
        assert errors[1] < errors[0] / 8


def test_blocked_neighbour_search_and_kl_match_the_single_block(monkeypatch):
    """Both searches find the k nearest up to float32 rounding: the same sets but for near-ties."""
    X, _ = _blobs(700)
    exact = ((X[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1)
    np.fill_diagonal(exact, np.inf)
    kth = np.sort(exact, 1)[:, 14:15]
    neighbours, distances = tsne.nearest_neighbours(X, 15)
    Y = np.random.default_rng(0).standard_normal((700, 2)).astype(np.float32) * 5
    P = tsne.joint_probabilities(X, 5.0)
    kl = tsne.kl_divergence(P, Y)
    monkeypatch.setattr(tsne, "_BLOCK_ELEMENTS", 700 * 64)  # 11 blocks, the last one short
    blocked, blocked_distances = tsne.nearest_neighbours(X, 15)
    assert len(tsne._row_blocks(700, 700)) == 11
    for found, found_distances in ((neighbours, distances), (blocked, blocked_distances)):
        true = np.take_along_axis(exact, found, 1)
        assert (true <= kth * (1 + 1e-5)).all()  # none beyond the true k-th nearest, but for rounding
        np.testing.assert_allclose(found_distances, true, rtol=1e-4, atol=1e-3)
    assert (np.sort(blocked, 1) == np.sort(neighbours, 1)).all(1).mean() > 0.99
    assert np.isclose(tsne.kl_divergence(P, Y), kl, rtol=1e-5)


@pytest.mark.parametrize("case", ["distinct", "duplicates", "tail"])
def test_k_smallest_by_group_minima_gives_torch_topks_bytes(case, monkeypatch):
    """The candidates of the k groups with the smallest minima give torch.topk's columns and values in
    its order, ties included (points repeated 3 times tie at every distance; rows of 6,001 columns
    leave one column outside the groups), and so does the blocked search built on it."""
    rng = np.random.default_rng(7)
    if case == "duplicates":
        X = np.repeat(rng.integers(0, 4, (2000, 6)), 3, axis=0).astype(np.float32)
    else:
        X = rng.standard_normal((6001 if case == "tail" else 6000, 8)).astype(np.float32)
    k = 91
    D = X[:300] @ X.T * -2 + (X * X).sum(1)
    found, values = tsne._k_smallest(D, k)
    partial, chosen = torch.topk(torch.from_numpy(D), k, dim=1, largest=False, sorted=False)
    assert found.tobytes() == chosen.numpy().astype(np.intp).tobytes()
    assert values.tobytes() == partial.numpy().tobytes()
    if case == "duplicates":  # the ties are real: they are what sends rows to torch.topk
        assert (values[:, 1:] == values[:, :-1]).any(1).all()
    monkeypatch.setattr(tsne, "_BLOCK_ELEMENTS", 6000 * 64)  # blocks of 512 rows on two threads
    neighbours, distances = tsne.nearest_neighbours(X, k)
    with threadpool_limits(2, user_api="blas"):  # the caller's BLAS threads change no bytes
        again = tsne.nearest_neighbours(X, k)
    assert again[0].tobytes() == neighbours.tobytes() and again[1].tobytes() == distances.tobytes()
    assert len(tsne._row_blocks(len(X), len(X) // 8)) == 12
    exact = ((X[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1)
    np.fill_diagonal(exact, np.inf)
    kth = np.sort(exact, 1)[:, k - 1:k]
    assert (np.take_along_axis(exact, neighbours, 1) <= kth * (1 + 1e-5) + 1e-4).all()
    assert (np.diff(distances, axis=1) >= 0).all()  # nearest first


@pytest.mark.parametrize("method", ["exact", "fft"])
def test_same_seed_same_bytes(method):
    X, _ = _blobs(400)
    runs = [tsne.TSNE(2, perplexity=15, max_iter=300, method=method, random_state=3).fit_transform(X) for _ in range(2)]
    assert runs[0].tobytes() == runs[1].tobytes()
    other = tsne.TSNE(2, perplexity=15, max_iter=300, method=method, init="random", random_state=4).fit_transform(X)
    assert other.tobytes() != runs[0].tobytes()


def test_auto_picks_exact_for_small_and_3d_fft_for_large():
    assert tsne.TSNE()._method(2000) == "exact"  # the reduce stage's 2,000 points keep their exact gradient
    assert tsne.TSNE()._method(tsne.FFT_FROM) == "fft"
    assert tsne.TSNE(n_components=3)._method(70000) == "exact"
    assert tsne.TSNE(method="exact")._method(70000) == "exact"
    with pytest.raises(ValueError, match="1 or 2 dimensions"):
        tsne.TSNE(n_components=3, method="fft")._method(100)
    with pytest.raises(ValueError, match="'method' parameter of TSNE must be a str among"):
        tsne.TSNE(method="barnes_hut").fit(np.zeros((100, 3)))


def test_fft_embedding_separates_blobs_as_the_exact_one_does():
    X, labels = _blobs(800)
    fft = tsne.TSNE(2, perplexity=20, method="fft").fit(X)
    exact = tsne.TSNE(2, perplexity=20, method="exact").fit(X)
    assert fft.method_ == "fft" and exact.method_ == "exact"
    assert embeddings.knn_accuracy(fft.embedding_, labels) > 0.95
    kl_fft = tsne.kl_divergence(fft.P_, fft.embedding_)
    assert kl_fft <= 1.05 * exact.kl_divergence_
    assert abs(fft.kl_divergence_ / kl_fft - 1) < 0.02  # the interpolated Z's estimate, reported as openTSNE does


@pytest.fixture(scope="module")
def full_project(prepared, tmp_path_factory):
    """The tsne_full stage mapping 600 training images and placing 600 test images, an untrained FashionNet, the FFT
    path forced."""
    root = make_mini_project(tmp_path_factory.mktemp("tsne_full") / "proj", prepared,
                             {"tsne_full.iterations": 300, "tsne_full.method": "fft"},
                             {"fashion_mnist_28": 600, "fashion_mnist_32": 600})
    torch.manual_seed(0)
    io.save_torch(root / "models/fashionnet.pt", classifiers.build("fashionnet").state_dict())
    return root, run_stage(root, "tsne_full.py")


@pytest.mark.slow
def test_full_dataset_stage_on_a_slice(full_project):
    root, result = full_project
    assert result.returncode == 0, result.stderr
    assert "600 images mapped, 600 placed: fashionnet_fc2 5-NN" in result.stdout
    metrics = json.loads((root / "metrics/tsne_full.json").read_text())
    assert set(metrics) == {"fashionnet_fc2", "pixels"}
    for scores in metrics.values():
        assert scores["n_fitted"] == 600 and scores["n_placed"] == 600 and scores["method"] == "fft"
        assert 0.5 < scores["knn5_acc"] <= 1 and 0 < scores["kl_divergence"] < 5
        assert abs(scores["knn5_acc_placed"] - scores["knn5_acc"]) < 0.1  # unseen images land among their class
    assert "seconds" not in json.dumps(metrics)  # times go to MLflow, never into a DVC output
    assert_drawn(root / "figures/tsne_full/maps.png", 500, 300)


@pytest.mark.slow
def test_full_dataset_stage_refuses_an_unknown_layer(full_project, tmp_path):
    root = make_mini_project(tmp_path / "proj", overrides={"tsne_full.layer": "fc9"})
    result = run_stage(root, "tsne_full.py")
    assert result.returncode == 2 and "tsne_full.layer = 'fc9' is invalid; allowed: conv1" in result.stderr
