"""PCA written from scratch in NumPy, a scikit-learn estimator that drops in beside theirs.

`PCA`: exact eigendecomposition of the smaller Gram matrix, or, for a few components of a large
matrix, randomized subspace iteration (Halko, Martinsson & Tropp 2011) as scikit-learn's `auto` does.
Parameters are declared once in `_parameter_constraints` and checked by scikit-learn's own validator
in `fit`, so a wrong value gets scikit-learn's message naming the parameter and its allowed range.
Our t-SNE, the other half of the comparison, is in `tsne.py`.
"""

from __future__ import annotations

from numbers import Integral

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data


def seed_of(random_state):
    """A NumPy Generator's seed from scikit-learn's random_state: an int or None as it is, a RandomState drawn from."""
    if isinstance(random_state, np.random.RandomState):
        return random_state.randint(2 ** 31)
    return random_state


class PCA(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Principal component analysis: the directions of largest variance, by eigendecomposition or sketch.

    Parameters
    ----------
    n_components : int or None, default=None
        Components to keep, from 1 to min(n_samples, n_features); None keeps all of them.
    svd_solver : {"auto", "exact", "randomized"}, default="auto"
        "auto" follows scikit-learn's rule: exact for small or tall-and-narrow data, randomized for a
        few components of a large matrix (fewer than 80 % of min(n_samples, n_features)).
    random_state : int or None, default=0
        Seed of the randomized solver's sketch; the exact solver uses no randomness, except to
        complete the basis past the data's rank.
    n_iter : int, default=7
        Power iterations of the randomized solver: each one sharpens the top of the spectrum.
    oversamples : int, default=10
        Extra sketch columns of the randomized solver beyond `n_components`.

    Attributes
    ----------
    components_ : ndarray of shape (n_components, n_features)
        Orthonormal principal axes, largest variance first; the largest loading of each is positive.
        Past the centred data's rank they complete an orthonormal basis, with variance 0.
    explained_variance_ : ndarray of shape (n_components,)
        Variance along each axis (ddof 1), never negative.
    explained_variance_ratio_ : ndarray of shape (n_components,)
        Each axis's share of the total variance (0 for constant data).
    singular_values_ : ndarray of shape (n_components,)
        Singular values of the centred data along the axes.
    mean_ : ndarray of shape (n_features,)
        Per-feature mean, subtracted before projecting.
    n_components_ : int
        Components kept.
    rank_ : int
        Numerical rank of the centred data.
    n_features_in_ : int
        Features seen in `fit`.
    n_samples_ : int
        Samples seen in `fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from latentlab.algorithms.pca import PCA
    >>> X = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.1]])
    >>> pca = PCA(n_components=1).fit(X)
    >>> pca.components_.shape
    (1, 2)
    >>> round(float(pca.explained_variance_ratio_[0]), 4)
    0.9999
    >>> PCA(n_components=3).fit(X)
    Traceback (most recent call last):
    ...
    ValueError: n_components=3 must be between 1 and min(n_samples, n_features)=2
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left"), None],
        "svd_solver": [StrOptions({"auto", "exact", "randomized"})],
        "random_state": ["random_state"],
        "n_iter": [Interval(Integral, 0, None, closed="left")],
        "oversamples": [Interval(Integral, 0, None, closed="left")],
    }

    def __init__(self, n_components: int | None = None, *, svd_solver: str = "auto", random_state=0,
                 n_iter: int = 7, oversamples: int = 10):
        self.n_components, self.svd_solver, self.random_state = n_components, svd_solver, random_state
        self.n_iter, self.oversamples = n_iter, oversamples

    @_fit_context(prefer_skip_nested_validation=True)
    def fit(self, X, y=None):
        """Fit the axes to X of shape (n_samples, n_features); float32 stays float32."""
        X = validate_data(self, X, dtype=[np.float64, np.float32], ensure_min_samples=2)
        n, d = X.shape
        k = min(n, d) if self.n_components is None else self.n_components
        if k > min(n, d):
            raise ValueError(f"n_components={k} must be between 1 and min(n_samples, n_features)={min(n, d)}")
        self.mean_ = X.mean(0)
        Xc = X - self.mean_
        total_var = float(np.einsum("ij,ij->", Xc, Xc, dtype=np.float64) / (n - 1))
        # scikit-learn's choice: few features and many samples → the small d x d covariance, exactly
        small = max(n, d) <= 500 or (d <= 1000 and n >= 10 * d)
        randomized = self.svd_solver == "randomized" or (self.svd_solver == "auto" and not small
                                                         and k < 0.8 * min(n, d))
        if randomized:
            components, variances = self._randomized(Xc, k)
        else:
            components, variances = self._exact(Xc, k)
        variances = np.maximum(variances.astype(np.float64), 0.0)  # rounding leaves null ones at ±1e-14
        # the rank: eigenvalues of the float64 Gram matrix are exact to about eps64 times the largest
        self.rank_ = int((variances > variances.max(initial=0.0) * max(n, d) * np.finfo(np.float64).eps).sum())
        singular = np.sqrt(variances * (n - 1))
        components = self._orthonormal(components.astype(Xc.dtype), variances)
        # sign convention: the largest loading of each component is positive
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(1)])
        self.components_ = components * signs[:, None]
        self.explained_variance_ = variances
        self.explained_variance_ratio_ = variances / total_var if total_var > 0 else np.zeros_like(variances)
        self.singular_values_ = singular
        self.n_samples_, self.n_components_ = n, k
        return self

    def _exact(self, Xc, k):
        """Eigenvectors of the smaller Gram matrix, in float64: squaring halves the digits float32 keeps."""
        Xc = Xc.astype(np.float64)
        n, d = Xc.shape
        if n < d:  # eigenvectors of Xc Xcᵀ map to components through Xcᵀ
            values, vectors = np.linalg.eigh(Xc @ Xc.T)
            order = np.argsort(values)[::-1][:k]
            components = (Xc.T @ vectors[:, order]).T
            components /= np.maximum(np.linalg.norm(components, axis=1, keepdims=True), np.finfo(np.float64).tiny)
            return components, values[order] / (n - 1)
        values, vectors = np.linalg.eigh(Xc.T @ Xc)
        order = np.argsort(values)[::-1][:k]
        return vectors[:, order].T, values[order] / (n - 1)

    def _randomized(self, Xc, k):
        n = Xc.shape[0]
        rng = np.random.default_rng(seed_of(self.random_state))
        Q = rng.standard_normal((Xc.shape[1], min(k + self.oversamples, min(Xc.shape)))).astype(Xc.dtype)
        Q, _ = np.linalg.qr(Xc @ Q)  # float32 stays float32: no upcast of Xc
        for _ in range(self.n_iter):  # power iterations sharpen the spectrum's top
            Q, _ = np.linalg.qr(Xc.T @ Q)
            Q, _ = np.linalg.qr(Xc @ Q)
        _, s, vt = np.linalg.svd(Q.T @ Xc, full_matrices=False)
        return vt[:k], s[:k] ** 2 / (n - 1)

    def _orthonormal(self, components, variances):
        """The axes past the rank carry no variance, and the Gram route leaves them as normalised noise:
        replace them by an orthonormal completion of the axes within the rank (seeded, so repeatable)."""
        r, (k, d) = self.rank_, components.shape
        if r >= k:
            return components
        rng = np.random.default_rng(seed_of(self.random_state))
        basis = np.hstack([components[:r].T.astype(np.float64), rng.standard_normal((d, k - r))])
        q, _ = np.linalg.qr(basis)
        out = components.copy()
        out[r:] = q[:, r:k].T
        return out

    def transform(self, X):
        """Project X onto the fitted axes: (n_samples, n_components), in X's float precision."""
        check_is_fitted(self)
        X = validate_data(self, X, dtype=[np.float64, np.float32], reset=False)
        return (X - self.mean_) @ self.components_.T

    def inverse_transform(self, Y):
        """Map projections back to the input space (exact for data within the kept axes)."""
        check_is_fitted(self)
        return np.asarray(Y) @ self.components_ + self.mean_

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)

    @property
    def _n_features_out(self):
        return self.n_components_

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags
