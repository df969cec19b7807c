"""How well an embedding keeps its input's neighbourhoods: k-NN class accuracy and trustworthiness.

Both by a k-d tree in the embedding, so they score 70,000 points as well as 2,000; trustworthiness is
scikit-learn's definition (Venna and Kaski), and equal to its `trustworthiness` (tested).
"""

from __future__ import annotations

import numpy as np
from sklearn.utils.validation import check_array


def _neighbours(Y: np.ndarray, k: int) -> np.ndarray:
    """Each point's k nearest others by a k-d tree: exact, and without an n x n matrix."""
    from scipy.spatial import cKDTree

    _, found = cKDTree(Y).query(Y, k + 1)
    self_last = np.argsort(found == np.arange(len(Y))[:, None], axis=1, kind="stable")  # a duplicate may come first
    return np.take_along_axis(found, self_last, 1)[:, :k]


def knn_accuracy(Y: np.ndarray, labels: np.ndarray, k: int = 5) -> float:
    """Leave-one-out k-NN majority vote inside the embedding: how well it separates the classes.

    Scores 70,000 points as well as 2,000 (`_neighbours`)."""
    return _vote_accuracy(labels[_neighbours(Y, k)], labels)


def _vote_accuracy(neighbour_labels: np.ndarray, labels: np.ndarray) -> float:
    """How often the majority label among each point's neighbours (n x k; ties to the lowest) is its own."""
    n, k = neighbour_labels.shape
    votes = np.zeros((n, max(neighbour_labels.max(), labels.max()) + 1), int)
    np.add.at(votes, (np.repeat(np.arange(n), k), neighbour_labels.ravel()), 1)
    return float((votes.argmax(1) == labels).mean())


def placed_knn_accuracy(Y: np.ndarray, placed: np.ndarray, labels: np.ndarray, placed_labels: np.ndarray,
                        k: int = 5) -> float:
    """k-NN majority vote of the map's points for points placed into it (`TSNE.transform`): how often an
    unseen point lands among its own class."""
    from scipy.spatial import cKDTree

    _, found = cKDTree(Y).query(placed, k)
    return _vote_accuracy(labels[found.reshape(len(placed), k)], placed_labels)


def input_ranks(distances: np.ndarray) -> np.ndarray:
    """ranks[i, j]: where j comes among i's neighbours in the input space (1 = nearest).

    Sorted once per layer and shared by its eight embeddings; scikit-learn's `trustworthiness` sorts
    the whole n x n matrix again for each one it scores (0.6 s at n = 2,000)."""
    d = distances.copy()
    np.fill_diagonal(d, np.inf)
    order = np.argsort(d, axis=1)
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(1, len(d) + 1)[None, :], axis=1)
    return ranks


def trustworthiness_from_ranks(ranks: np.ndarray, X_embedded: np.ndarray, n_neighbors: int = 5) -> float:
    """`trustworthiness` from the input's `input_ranks`, computed once for many embeddings of one input."""
    Y = np.asarray(X_embedded)
    n, k = len(Y), n_neighbors
    if ranks.shape != (n, n):
        raise ValueError(f"ranks has shape {ranks.shape}; it must be (n_samples, n_samples) = ({n}, {n})")
    if not (isinstance(k, (int, np.integer)) and 1 <= k < n / 2):
        raise ValueError(f"n_neighbors={k!r} must be an int from 1 to below n_samples / 2 ({n / 2}): "
                         "beyond that the score leaves [0, 1]")
    beyond = np.take_along_axis(ranks, _neighbours(Y, k), 1) - k
    return float(1.0 - beyond[beyond > 0].sum() * (2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))))


def trustworthiness(X, X_embedded, *, n_neighbors: int = 5) -> float:
    """Venna and Kaski's trustworthiness, as scikit-learn defines it: how far each point's k nearest
    neighbours in the embedding lie beyond its k nearest in the input space (1 = none do).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        The input.
    X_embedded : array-like of shape (n_samples, n_components)
        Its embedding.
    n_neighbors : int, default=5
        k, from 1 to below n_samples / 2 (beyond that the score is not in [0, 1]).

    Examples
    --------
    >>> import numpy as np
    >>> from latentlab.algorithms.embedding_quality import trustworthiness
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> trustworthiness(X, X[:, :2]) > trustworthiness(X, np.random.default_rng(1).normal(size=(50, 2)))
    True
    >>> trustworthiness(X[:7], X[:7, :2], n_neighbors=5)
    Traceback (most recent call last):
    ...
    ValueError: n_neighbors=5 must be an int from 1 to below n_samples / 2 (3.5): beyond that the score leaves [0, 1]
    """
    X = check_array(X, dtype=[np.float64, np.float32])
    Y = check_array(X_embedded, dtype=[np.float64, np.float32])
    if len(X) != len(Y):
        raise ValueError(f"X has {len(X)} samples but X_embedded has {len(Y)}; they must be the same points")
    from latentlab.algorithms.tsne import squared_distances

    return trustworthiness_from_ranks(input_ranks(np.sqrt(squared_distances(X.astype(np.float64)))), Y, n_neighbors)
