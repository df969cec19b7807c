"""Our PCA and t-SNE against scikit-learn's, activations through hooks, and the embedding stages' guards."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import assert_drawn, make_mini_project, run_stage
from latentlab.studies import activations, embeddings
from latentlab.algorithms import numpy_nn, pca, tsne
from latentlab.runtime.errors import LatentlabError
from latentlab.models import classifiers


def _blobs(n=300, d=20, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((5, d)) * 6
    labels = rng.integers(0, 5, n)
    return (centers[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


@pytest.mark.parametrize("shape", [(300, 20), (60, 400), (900, 700)])  # exact (both Gram sides) and randomized
def test_pca_matches_sklearn(shape):
    """Activations have a decaying (power-law) spectrum; randomized subspace iteration is exact to 1e-6 there."""
    X = np.random.default_rng(1).standard_normal(shape) @ np.diag(10.0 / np.arange(1, shape[1] + 1))
    from sklearn.decomposition import PCA as SkPCA

    ours, theirs = pca.PCA(3).fit(X), SkPCA(3, svd_solver="full").fit(X)
    np.testing.assert_allclose(ours.explained_variance_ratio_, theirs.explained_variance_ratio_, atol=1e-6)
    np.testing.assert_allclose(np.abs(ours.transform(X)), np.abs(theirs.transform(X)), atol=1e-6 * np.abs(X).max() * 10)


def test_joint_probabilities_have_the_perplexity():
    X, _ = _blobs()
    rows, cols, vals = tsne.joint_probabilities(X, 20.0)
    assert np.isclose(vals.sum(), 1.0) and np.all(vals > 0) and not np.any(rows == cols)
    P = np.zeros((len(X), len(X)))
    P[rows, cols] = vals
    np.testing.assert_allclose(P, P.T)


def test_tsne_reaches_sklearn_quality_on_blobs():
    X, labels = _blobs()
    ours = tsne.TSNE(2, perplexity=20, init="pca", random_state=0)
    Y = ours.fit_transform(X)
    from sklearn.manifold import TSNE as SkTSNE

    theirs = SkTSNE(2, perplexity=20, init="pca", random_state=0, method="exact").fit(X)
    assert Y.shape == (300, 2) and ours.n_iter_ >= 250
    assert ours.kl_divergence_ <= 1.05 * tsne.kl_divergence(ours.P_, theirs.embedding_)
    assert embeddings.knn_accuracy(Y, labels) > 0.95
    assert np.isclose(ours.kl_divergence_, tsne.kl_divergence(ours.P_, Y.astype(np.float32)))


@pytest.mark.parametrize("n", [50, 301])  # one strip; several strips with a short last one
def test_repulsion_strips_match_the_dense_kernel(n):
    Y = np.random.default_rng(n).standard_normal((n, 3)).astype(np.float32)
    W = 1 / (1 + ((Y[:, None].astype(np.float64) - Y[None]) ** 2).sum(-1))
    np.fill_diagonal(W, 0)
    z, push = tsne._Repulsion(n, 3, block_bytes=64 * 4 * n)(Y)
    expected = ((W * W).sum(1, keepdims=True) * Y - (W * W) @ Y) / W.sum()
    assert np.isclose(z, W.sum(), rtol=1e-6)
    np.testing.assert_allclose((push[:, :1] * Y - push[:, 1:]) / z, expected, atol=1e-5 * np.abs(expected).max())


def test_tsne_refuses_perplexity_at_or_above_n():
    with pytest.raises(ValueError, match="perplexity"):
        tsne.TSNE(perplexity=50).fit_transform(np.zeros((50, 3)))


def test_knn_accuracy_counts_neighbours():
    Y = np.array([[0, 0], [0, 1], [1, 0], [10, 10], [10, 11], [11, 10]], float)
    assert embeddings.knn_accuracy(Y, np.array([0, 0, 0, 1, 1, 1]), k=2) == 1.0
    assert embeddings.knn_accuracy(Y, np.array([0, 1, 0, 1, 0, 1]), k=2) < 0.5


@pytest.mark.parametrize("dims", [2, 3])
def test_trustworthiness_from_shared_ranks_equals_scikit_learn_s(dims):
    from sklearn.manifold import trustworthiness

    rng = np.random.default_rng(dims)
    X = rng.normal(size=(400, 20)).astype(np.float32)
    distances = np.sqrt(tsne.squared_distances(X))
    np.fill_diagonal(distances, 0.0)
    ranks = embeddings.input_ranks(distances)
    for Y in (X[:, :dims] + 0.3 * rng.normal(size=(400, dims)), rng.normal(size=(400, dims))):  # faithful, random
        expected = trustworthiness(distances, Y, n_neighbors=5, metric="precomputed")
        assert embeddings.trustworthiness_from_ranks(ranks, Y) == pytest.approx(expected, abs=1e-12)
    assert embeddings.trustworthiness_from_ranks(ranks, X[:, :dims]) > embeddings.trustworthiness_from_ranks(ranks, rng.normal(size=(400, dims)))


def test_hooks_read_named_layers_of_both_frameworks():
    model = classifiers.build("fashionnet")
    acts = activations.torch_activations(model, ["conv2", "fc1", "logits"], torch.randn(7, 1, 32, 32))
    assert {k: v.shape for k, v in acts.items()} == {"conv2": (7, 32 * 8 * 8), "fc1": (7, 256), "logits": (7, 10)}
    assert not model._forward_hooks and not model.conv2._forward_hooks  # hooks removed again
    net = numpy_nn.Net.mlp([784, 32, 16, 10])
    got = activations.numpy_activations(net, ["fc1", "logits"], np.ones((4, 784), np.float32))
    np.testing.assert_allclose(got["logits"], net.forward(np.ones((4, 784), np.float32)), rtol=1e-6)


def test_balanced_sample_and_its_floor():
    labels = np.repeat(np.arange(10), 30)
    idx = activations.balanced_sample(labels, 20, seed=0)
    assert np.bincount(labels[idx]).tolist() == [20] * 10
    with pytest.raises(LatentlabError, match="extract.per_class = 40"):
        activations.balanced_sample(labels, 40, seed=0)
    with pytest.raises(LatentlabError, match="extract.models.lenet.layers names 'conv9'"):
        activations.check_layers("lenet", ["conv9"])


def test_embedding_params_refused_by_the_schema():
    from conftest import committed_params
    from latentlab.runtime import params

    with pytest.raises(LatentlabError, match="extract.per_class = 10 is invalid; allowed: an integer >= 15"):
        params.validate(committed_params({"extract.per_class": 10}))




@pytest.fixture(scope="module")
def embedding_project(prepared, tmp_path_factory):
    """Untrained models, a PyTorch one and the NumPy MLP, as `extract.models` lists them; then extract,
    reduce and the figures, on 15 images per class."""
    from conftest import committed_params

    from latentlab.runtime import io

    looked_inside = {k: v for k, v in committed_params()["extract"]["models"].items()
                     if k in ("fashionnet", "numpy_mlp")}
    root = make_mini_project(tmp_path_factory.mktemp("emb") / "proj", prepared,
                             {"extract.per_class": 15, "reduce.tsne_iter": 250, "reduce.perplexity": 10.0,
                              "extract.models": looked_inside},
                             {"fashion_mnist_28": 10000, "fashion_mnist_32": 10000})
    torch.manual_seed(0)
    io.save_torch(root / "models/fashionnet.pt", classifiers.build("fashionnet").state_dict())
    numpy_nn.Net.mlp([784, 32, 16, 10]).save(root / "models/numpy_mlp.npz")
    results = [run_stage(root, script, model) for model in looked_inside for script in ("extract.py", "reduce.py")]
    results.append(run_stage(root, "embedding_figures.py"))
    return root, results


@pytest.mark.slow
def test_embedding_stages_end_to_end(embedding_project):
    import json

    from conftest import committed_params

    import pandas as pd

    root, results = embedding_project
    for result in results:
        assert result.returncode == 0, result.stderr
    table = pd.read_csv(root / "metrics/embeddings.csv")
    assert committed_params()["reduce"]["sklearn_models"] == ["fashionnet"]
    assert len(table) == 2 * 3 * 2 * 2 + 3 * 2 * 2  # ours: models x layers x methods x dims; scikit-learn's: one model
    assert set(table[table.impl == "sklearn"].model) == {"fashionnet"}
    assert table[table.model != "fashionnet"].procrustes.isna().all()  # no comparison where scikit-learn did not run
    assert list(dict.fromkeys(table.model)) == ["fashionnet", "numpy_mlp"]  # extract.models' order
    assert table.trustworthiness.between(0, 1).all() and table.knn5_acc.between(0, 1).all()
    pca = table[(table.method == "pca") & (table.model == "fashionnet")]
    # untrained logits have tiny variance on a large mean: scikit-learn's float32 SVD is off by ~3e-5 there
    # (ours matches float64 to 1e-11), so the agreement bar here is looser than the 1e-6 on real activations
    assert (pca.evr_max_gap < 1e-4).all() and (pca.procrustes < 1e-6).all()
    summary = json.loads((root / "metrics/embeddings.json").read_text())
    assert set(summary) >= {"pca_ours_2d", "tsne_sklearn_3d", "knn5_acc_tsne_ours_2d"}
    ours = table[(table.method == "tsne") & (table.impl == "ours") & (table.dims == 2)]
    assert summary["tsne_ours_2d"]["knn5_acc_mean"] == round(ours[ours.model == "fashionnet"].knn5_acc.mean(), 4)
    assert len(summary["knn5_acc_tsne_ours_2d"]) == 6  # every model's layers, compared or not
    for figure in ("fashionnet_grid", "numpy_mlp_grid", "views_3d", "ours_vs_sklearn", "knn_by_layer"):
        assert_drawn(root / f"figures/embeddings/{figure}.png", 500, 350)
