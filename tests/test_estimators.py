"""Our PCA and t-SNE as scikit-learn estimators: scikit-learn's own checks, its tools, validation, edge cases,
new points placed into a fitted map, and the docstrings' examples."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from latentlab.algorithms import embedding_quality, pca, tsne
from latentlab.algorithms.pca import PCA
from latentlab.algorithms.tsne import TSNE

# transform places new points into a fixed map by optimising them alone; it is not a re-run of the
# fit, so for the training points it cannot give back fit_transform's map (openTSNE's does not either)
_NOT_A_REFIT = ("transform places new points into the fitted map; it does not reproduce fit_transform's map "
                "for the training points, by design")
EXPECTED_FAILURES = {
    "TSNE": {"check_transformer_general": _NOT_A_REFIT,
             "check_transformer_data_not_an_array": _NOT_A_REFIT},
}


def _expected_failed_checks(estimator):
    return EXPECTED_FAILURES.get(type(estimator).__name__, {})


@parametrize_with_checks([PCA(), TSNE(perplexity=5, max_iter=250)], expected_failed_checks=_expected_failed_checks)
def test_scikit_learn_estimator_checks(estimator, check):
    check(estimator)


def _blobs(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n)
    return (rng.normal(size=(3, d))[labels] * 8 + rng.normal(size=(n, d))).astype(np.float32), labels


# ---------------------------------------------------------------- scikit-learn's tools

def test_clone_keeps_the_params_and_drops_the_fit():
    model = TSNE(perplexity=7, max_iter=300, init="random", method="exact").fit(_blobs()[0])
    copy = clone(model)
    assert copy.get_params() == model.get_params() and not hasattr(copy, "embedding_")
    assert clone(PCA(3, svd_solver="exact")).set_params(n_components=2).get_params()["n_components"] == 2


def test_pipeline_scales_then_reduces():
    X, labels = _blobs()
    Y = make_pipeline(StandardScaler(), PCA(4), TSNE(perplexity=10, max_iter=300)).fit_transform(X)
    assert Y.shape == (120, 2) and np.isfinite(Y).all()
    assert embedding_quality.knn_accuracy(Y.astype(np.float64), labels) > 0.95


def test_grid_search_over_our_pca():
    X, labels = _blobs(n=150, d=10)
    search = GridSearchCV(make_pipeline(PCA(), KNeighborsClassifier(3)), {"pca__n_components": [1, 2, 5]}, cv=3)
    search.fit(X, labels)
    assert search.best_params_["pca__n_components"] in (1, 2, 5) and search.best_score_ > 0.9
    assert len(search.cv_results_["mean_test_score"]) == 3


# ---------------------------------------------------------------- validation

@pytest.mark.parametrize("params, message", [
    (dict(perplexity=0), "'perplexity' parameter of TSNE must be a float in the range \\(0.0, inf\\)"),
    (dict(perplexity=-5), "'perplexity' parameter of TSNE must be a float in the range \\(0.0, inf\\)"),
    (dict(perplexity=500), "perplexity=500 must be less than n_samples=120"),
    (dict(init="pcaa"), "'init' parameter of TSNE must be a str among .*'pca'.* or an instance of 'numpy.ndarray'"),
    (dict(init=np.zeros((100, 2))), "init has shape \\(100, 2\\); .* \\(n_samples, n_components\\) = \\(120, 2\\)"),
    (dict(learning_rate=-1.0), "'learning_rate' parameter of TSNE must be a str among {'auto'} or a float"),
    (dict(max_iter=0), "'max_iter' parameter of TSNE must be an int in the range \\[1, inf\\)"),
    (dict(method="barnes_hut"), "'method' parameter of TSNE must be a str among"),
    (dict(method="fft", n_components=3), "method='fft' embeds in 1 or 2 dimensions, not n_components=3"),
    (dict(n_components=0), "'n_components' parameter of TSNE must be an int in the range \\[1, inf\\)"),
])
def test_tsne_refuses_bad_params_naming_them(params, message):
    with pytest.raises(ValueError, match=message):
        TSNE(**params).fit(_blobs()[0])


def test_an_array_init_of_the_right_shape_is_the_start():
    X, _ = _blobs()
    start = np.random.default_rng(3).normal(size=(120, 2)).astype(np.float32)
    a = TSNE(perplexity=10, init=start, max_iter=300).fit_transform(X)
    b = TSNE(perplexity=10, init=start.copy(), max_iter=300).fit_transform(X)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, TSNE(perplexity=10, init="random", max_iter=300).fit_transform(X))


@pytest.mark.parametrize("n_components, message", [
    (4, "n_components=4 must be between 1 and min\\(n_samples, n_features\\)=3"),
    (0, "'n_components' parameter of PCA must be an int in the range \\[1, inf\\) or None"),
])
def test_pca_refuses_n_components_out_of_range(n_components, message):
    with pytest.raises(ValueError, match=message):
        PCA(n_components).fit(np.random.default_rng(0).normal(size=(10, 3)))


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("estimator", [PCA(2), TSNE(perplexity=5)])
def test_nan_or_inf_input_is_a_value_error(estimator, bad):
    X = _blobs()[0]
    X[3, 2] = bad
    with pytest.raises(ValueError, match="Input X contains (NaN|infinity)"):
        estimator.fit(X)


def test_trustworthiness_refuses_too_many_neighbours():
    X = np.random.default_rng(0).normal(size=(7, 3))
    with pytest.raises(ValueError, match="n_neighbors=5 must be an int from 1 to below n_samples / 2 \\(3.5\\)"):
        embedding_quality.trustworthiness(X, X[:, :2], n_neighbors=5)
    assert 0.0 <= embedding_quality.trustworthiness(X, X[:, :2], n_neighbors=3) <= 1.0


# ---------------------------------------------------------------- edge cases

@pytest.mark.parametrize("shape", [(20, 60), (40, 40), (300, 8)])
@pytest.mark.parametrize("seed", range(20))
def test_pca_on_rank_deficient_data_has_no_negative_variance_and_orthonormal_axes(shape, seed):
    """Data of rank 3 (after centring): the axes past it carry variance 0 and complete an orthonormal basis."""
    rng = np.random.default_rng(seed)
    n, d = shape
    X = rng.normal(size=(n, 3)) @ rng.normal(size=(3, d)) + rng.normal(size=d)
    k = min(n, d)
    model = PCA(k, svd_solver="exact").fit(X)
    assert model.rank_ == 3
    assert (model.explained_variance_ >= 0).all() and (model.explained_variance_ratio_ >= 0).all()
    np.testing.assert_allclose(model.explained_variance_ratio_.sum(), 1.0, atol=1e-10)
    np.testing.assert_allclose(model.components_ @ model.components_.T, np.eye(k), atol=1e-10)
    np.testing.assert_allclose(model.inverse_transform(model.transform(X)), X, atol=1e-8)


def test_pca_on_constant_data_explains_nothing_and_stays_finite():
    model = PCA(2).fit(np.full((10, 4), 3.0))
    assert model.rank_ == 0 and (model.explained_variance_ == 0).all() and (model.explained_variance_ratio_ == 0).all()
    np.testing.assert_allclose(model.components_ @ model.components_.T, np.eye(2), atol=1e-12)


@pytest.mark.parametrize("X", [np.full((50, 4), 2.5), np.array([[0.0, 1.0], [1.0, 0.0]]),
                               np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0], [0.0, 2.0, 0.0]])],
                         ids=["constant", "2 points", "3 points"])
@pytest.mark.parametrize("method", ["exact", "auto"])
def test_tsne_on_degenerate_input_gives_a_finite_map(X, method):
    Y = TSNE(perplexity=min(5.0, len(X) - 1.0), method=method, max_iter=300).fit_transform(X)
    assert Y.shape == (len(X), 2) and np.isfinite(Y).all()


@pytest.mark.parametrize("estimator", [PCA(3), TSNE(perplexity=10, max_iter=300)])
def test_float32_in_float32_out(estimator):
    X = _blobs()[0]
    assert estimator.fit_transform(X).dtype == np.float32
    assert estimator.transform(X[:5]).dtype == np.float32
    assert clone(estimator).fit_transform(X.astype(np.float64)).dtype == np.float64


def test_n_iter_is_the_last_index_as_scikit_learn_reports_it():
    assert TSNE(perplexity=10, max_iter=300, n_iter_without_progress=1000).fit(_blobs()[0]).n_iter_ == 299


# ---------------------------------------------------------------- new points into a fitted map

@pytest.mark.slow
def test_held_out_images_land_among_their_class(prepared):
    """Fashion-MNIST test images: 9,000 mapped (the FFT method), 1,000 others placed into the map. Each placed
    image's class by a 5-NN vote of the mapped images near it is right about as often as a mapped image's
    by its neighbours in the map (leave-one-out)."""
    split = prepared("fashion_mnist_28")
    x = split["x_test"].reshape(len(split["x_test"]), -1).astype(np.float32) / 255
    labels = split["y_test"].astype(np.int64)
    features = pca.PCA(50).fit(x[:9000])
    X = features.transform(x).astype(np.float32)
    model = TSNE(perplexity=30, max_iter=750).fit(X[:9000])
    assert model.method_ == "fft"
    placed = model.transform(X[9000:])
    fitted = embedding_quality.knn_accuracy(model.embedding_.astype(np.float64), labels[:9000])
    held_out = KNeighborsClassifier(5).fit(model.embedding_, labels[:9000]).score(placed, labels[9000:])
    assert fitted > 0.75 and abs(held_out - fitted) <= 0.03, (fitted, held_out)


def test_placing_points_leaves_the_map_alone_and_does_not_depend_on_the_batch():
    X, labels = _blobs(n=300)
    model = TSNE(perplexity=10, max_iter=300).fit(X[:250])
    before = model.embedding_.copy()
    together = model.transform(X[250:])
    one_by_one = np.vstack([model.transform(X[i:i + 1]) for i in range(250, 300)])
    np.testing.assert_array_equal(model.embedding_, before)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-6, atol=1e-6)
    vote = KNeighborsClassifier(5).fit(model.embedding_, labels[:250]).score(together, labels[250:])
    assert vote > 0.95


def test_transform_before_fit_and_wrong_width_are_refused():
    from sklearn.exceptions import NotFittedError

    X = _blobs()[0]
    with pytest.raises(NotFittedError):
        TSNE().transform(X)
    model = TSNE(perplexity=10, max_iter=300).fit(X)
    with pytest.raises(ValueError, match="X has 5 features, but TSNE is expecting 6 features as input"):
        model.transform(X[:, :5])
    with pytest.raises(ValueError, match="perplexity=0 must be a float in \\(0, n_fitted=120\\)"):
        model.transform(X, perplexity=0)


# ---------------------------------------------------------------- docs

@pytest.mark.parametrize("module", [pca, tsne, embedding_quality], ids=lambda m: m.__name__)
def test_docstring_examples_run(module):
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
