"""PCA written from scratch in NumPy, with scikit-learn's estimator API so it drops in beside theirs.

`PCA`: exact eigendecomposition of the smaller Gram matrix, or, for a few components of a large
matrix, randomized subspace iteration (Halko, Martinsson & Tropp 2011) as scikit-learn's `auto` does.
Our t-SNE, the other half of the comparison, is in `tsne.py`.
"""

from __future__ import annotations

import numpy as np


class PCA:
    def __init__(self, n_components: int = 2, random_state: int | None = 0, n_iter: int = 7, oversamples: int = 10):
        self.n_components, self.random_state = n_components, random_state
        self.n_iter, self.oversamples = n_iter, oversamples

    def fit(self, X, y=None):
        X = np.asarray(X)
        X = X if X.dtype in (np.float32, np.float64) else X.astype(np.float64)  # float32 stays float32
        n, d = X.shape
        k = self.n_components
        self.mean_ = X.mean(0)
        Xc = X - self.mean_
        total_var = float(np.einsum("ij,ij->", Xc, Xc, dtype=np.float64) / (n - 1))
        # scikit-learn's choice: few features and many samples → the small d x d covariance, exactly
        small = max(n, d) <= 500 or (d <= 1000 and n >= 10 * d)
        if not small and k < 0.8 * min(n, d):
            components, variances = self._randomized(Xc, k)
        else:
            components, variances = self._exact(Xc, k)
            components = components.astype(Xc.dtype)
        # sign convention: the largest loading of each component is positive
        signs = np.sign(components[np.arange(k), np.abs(components).argmax(1)])
        self.components_ = components * signs[:, None]
        variances = variances.astype(np.float64)
        self.explained_variance_ = variances
        self.explained_variance_ratio_ = variances / total_var
        self.n_samples_, self.n_features_in_ = n, d
        return self

    def _exact(self, Xc, k):
        """Eigenvectors of the smaller Gram matrix, in float64: squaring halves the digits float32 keeps."""
        Xc = Xc.astype(np.float64)
        n, d = Xc.shape
        if n < d:  # eigenvectors of Xc Xcᵀ map to components through Xcᵀ
            values, vectors = np.linalg.eigh(Xc @ Xc.T)
            order = np.argsort(values)[::-1][:k]
            components = (Xc.T @ vectors[:, order]).T
            components /= np.linalg.norm(components, axis=1, keepdims=True)
            return components, values[order] / (n - 1)
        values, vectors = np.linalg.eigh(Xc.T @ Xc)
        order = np.argsort(values)[::-1][:k]
        return vectors[:, order].T, values[order] / (n - 1)

    def _randomized(self, Xc, k):
        n = Xc.shape[0]
        rng = np.random.default_rng(self.random_state)
        Q = rng.standard_normal((Xc.shape[1], k + self.oversamples)).astype(Xc.dtype)  # no float64 upcast of Xc
        Q, _ = np.linalg.qr(Xc @ Q)
        for _ in range(self.n_iter):  # power iterations sharpen the spectrum's top
            Q, _ = np.linalg.qr(Xc.T @ Q)
            Q, _ = np.linalg.qr(Xc @ Q)
        _, s, vt = np.linalg.svd(Q.T @ Xc, full_matrices=False)
        return vt[:k], s[:k] ** 2 / (n - 1)

    def transform(self, X):
        return (np.asarray(X) - self.mean_) @ self.components_.T

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)
