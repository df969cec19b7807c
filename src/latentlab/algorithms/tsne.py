"""t-SNE written from scratch in NumPy, with scikit-learn's estimator API, from 2,000 points to 70,000.

Organised like openTSNE, in four parts:

- neighbours (`nearest_neighbours`): an exact k-nearest-neighbour search, each block of rows' distances
  one BLAS product and its k smallest ranked among the k column groups with the smallest minima
  (`_k_smallest`; by `argpartition` when all the distances fit in one block). Exact, so P never
  depends on a random forest of trees.
- affinities (`joint_probabilities`): a perplexity-calibrated Gaussian over each point's 3·perplexity
  nearest neighbours (the remaining affinities are below float precision anyway), its precision
  found by a bisection run for all points at once, then symmetrised into a sparse joint P.
- gradient: ∂C/∂y_i = 4 Σ_j (p_ij − q_ij) w_ij (y_i − y_j), w_ij = (1 + |y_i − y_j|²)⁻¹, split into
  the attraction over the sparse P (`_Attraction`) and the repulsion Σ_j w_ij² (y_i − y_j) / Z over
  all pairs, either exactly (`_Repulsion`, O(n²) in cache-sized strips) or interpolated on a grid
  (`_Interpolation`, O(n): FIt-SNE, Linderman et al. 2019), the repulsion on a second thread
  while the first computes the attraction, whose remaining blocks the second then shares.
- optimizer (`TSNE._descend`): early exaggeration, momentum and per-parameter gains as in the
  reference implementation.

`method="auto"` takes the exact repulsion below `FFT_FROM` points, where it is both faster and
exact (n = 2,000: the whole fit in 3.4 s; the FFT's cost follows the embedding's range, not n, and
the two cross between 3,000 and 4,000 points), and the interpolated one from there on
(benchmarks/bench_tsne.py measures it against openTSNE and scikit-learn). Where both are cheap the
exact one ends about 2 % lower in KL (n = 3,000: 1.014 against 1.037). The FFT path also takes
openTSNE's step sizes (learning rate n / exaggeration per phase, steps clipped to length 5, gains
kept across phases, the embedding re-centred every iteration): the embedding must spread over a
range that grows with n, and scikit-learn's n / 48 for both phases leaves it short of that (at
n = 5,000 its KL ended 4 % higher after 1,000 iterations, 1.28 against 1.23).
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from numbers import Integral, Real

import numpy as np
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin, _fit_context
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted, validate_data
from threadpoolctl import threadpool_limits

from latentlab.algorithms.pca import PCA, seed_of

MACHINE_EPSILON = np.finfo(np.double).eps
FFT_FROM = 4000  # `auto`: the interpolated gradient from this many points on (2-D only)
_BLOCK_ELEMENTS = 1 << 23  # distance blocks of 32 MB (float32): two in flight stay far below memory
_GROUP = 16  # the neighbour search's column groups (`_k_smallest`)


# ---------------------------------------------------------------- neighbours

def squared_distances(X: np.ndarray) -> np.ndarray:
    """All pairwise squared Euclidean distances, by one matrix product (n x n: for small n only)."""
    sq = (X * X).sum(1)
    D = X @ X.T
    D *= -2
    D += sq[:, None]
    D += sq[None, :]
    np.maximum(D, 0, out=D)
    return D


def _row_blocks(n: int, columns: int) -> list[tuple[int, int]]:
    rows = max(1, _BLOCK_ELEMENTS // max(columns, 1))
    return [(s, min(s + rows, n)) for s in range(0, n, rows)]


def _topk(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k smallest entries of D as (columns, values), by `torch.topk` (unsorted mode)."""
    import torch

    values, columns = torch.topk(torch.from_numpy(D), k, dim=1, largest=False, sorted=False)
    return columns.numpy(), values.numpy()


def _k_smallest(D: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row's k smallest entries of D (rows of at least 64·k), as (columns, values) in increasing
    order: those `torch.topk` gives, found in half its time.

    The first 16·G columns form G groups of 16, column c with c + G, c + 2G, ... (the minima are then
    16 rows of G, one vectorised pass), the last m − 16·G columns stay candidates by themselves. A
    row's k smallest lie among the k groups with the smallest minima: an entry of any other group is
    at least its group's minimum, which k entries of the chosen groups already undercut. So only
    16·k candidates a row are ranked, not all m. Where values tie (an entry equal to the k-th outside
    the candidates, more than k candidates up to the k-th, or two equal values among the k), which
    columns are taken and in what order is `torch.topk`'s, so such rows are handed to it whole: the
    results are its bytes, and so are the maps made of them.
    """
    rows, m = D.shape
    G = m // _GROUP
    minima = D[:, :_GROUP * G].reshape(rows, _GROUP, G).min(1)
    groups = np.argpartition(minima, k - 1, axis=1)[:, :k]
    columns = np.hstack([(groups[:, :, None] + G * np.arange(_GROUP)).reshape(rows, -1),
                         np.broadcast_to(np.arange(_GROUP * G, m), (rows, m - _GROUP * G))])
    candidates = np.take_along_axis(D, columns, 1)
    order = np.argpartition(candidates, k - 1, axis=1)
    kth = np.take_along_axis(candidates, order[:, k - 1:k], 1)
    found, values = np.take_along_axis(columns, order[:, :k], 1), np.take_along_axis(candidates, order[:, :k], 1)
    order = np.argsort(values, axis=1, kind="stable")
    found, values = np.take_along_axis(found, order, 1), np.take_along_axis(values, order, 1)
    outside = (minima <= kth).sum(1) - (np.take_along_axis(minima, groups, 1) <= kth).sum(1)
    tied = np.flatnonzero(((candidates <= kth).sum(1) != k) | (outside > 0) | (values[:, 1:] == values[:, :-1]).any(1))
    if len(tied):
        found[tied], values[tied] = _topk(D[tied], k)
    return found, values


def nearest_neighbours(X: np.ndarray, k: int, reference: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Indices (n, k) of each row's k nearest other rows and their squared distances (float64).

    With `reference`, the k nearest rows of `reference` instead (a row is then not excluded from
    its own neighbours: new points searched among a fitted map's), their distances exact in float64.
    Up to `_BLOCK_ELEMENTS` distances the search is one block; above it, blocks of rows on two
    threads. For a block, one matrix product gives |x_j|² − 2·x_i·x_j (the row's own |x_i|², the
    same along the row, does not change its order), and `_k_smallest` picks the k smallest (for rows
    shorter than 64·k, `torch.topk`): at 60,000 x 50 and k = 91, 4.6 s of picking where `torch.topk`
    took 9.0 s and `np.argpartition` more (one thread; docs/performance.md). The products keep their
    blocks' rows: OpenBLAS's sums depend on a product's shape, so other blocks would move
    distances in their last bit. Exact up to float32 rounding, so two searches can disagree only
    between neighbours at the same distance to that precision. In blocks, each row's neighbours come
    nearest first (by the float32 distances); in one block, unordered.
    """
    X = np.ascontiguousarray(X, dtype=np.float32)
    R = X if reference is None else np.ascontiguousarray(reference, dtype=np.float32)
    n, m = len(X), len(R)
    if reference is None and len(_row_blocks(n, n)) == 1:
        D = squared_distances(X).astype(np.float64)
        np.fill_diagonal(D, np.inf)
        neighbours = np.argpartition(D, k, axis=1)[:, :k]
        return neighbours, np.take_along_axis(D, neighbours, 1)
    sq = (R * R).sum(1)
    own = sq if reference is None else (X * X).sum(1)
    left = np.hstack([X, np.ones((n, 1), np.float32)])
    right = np.ascontiguousarray(np.vstack([-2 * R.T, sq[None, :]]))
    neighbours = np.empty((n, k), np.intp)
    distances = np.empty((n, k), np.float64)

    def search(block):
        s, e = block
        D = left[s:e] @ right
        if reference is None:
            D[np.arange(e - s), np.arange(s, e)] = np.inf
        found, partial = _k_smallest(D, k) if m >= 64 * k else _topk(D, k)
        neighbours[s:e] = found
        if reference is None:
            distances[s:e] = np.maximum(partial.astype(np.float64) + own[s:e, None], 0)
        else:  # recomputed pair by pair in float64: a row's distances then do not depend on its block
            distances[s:e] = ((X[s:e, None, :].astype(np.float64) - R[found]) ** 2).sum(-1)

    with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
        list(pool.map(search, _row_blocks(n, max(1, m // 8))))  # 256 MB blocks: fewer, larger products
    return neighbours, distances


# ---------------------------------------------------------------- affinities

def conditional_probabilities(Dk: np.ndarray, perplexity: float, tol: float = 1e-5, steps: int = 100,
                              per_row: bool = False) -> np.ndarray:
    """p_j|i over each row's neighbours (squared distances Dk, n x k), each row summing to 1.

    Each point's Gaussian precision is found by bisection so its conditional distribution has the
    given perplexity; all points are searched at once, one vectorised step per bisection step, until
    every row is within `tol`. With `per_row`, a row stops at its own convergence instead, so its
    result does not depend on the other rows searched with it (`TSNE.transform`).
    """
    Dk = Dk - Dk.min(1, keepdims=True)  # shift per row: same distribution, no underflow
    n = len(Dk)
    target = np.log(perplexity)
    beta = np.ones(n)
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    for _ in range(steps):
        P = np.exp(-Dk * beta[:, None])
        sum_p = P.sum(1)
        entropy = np.log(sum_p) + beta * (Dk * P).sum(1) / sum_p
        diff = entropy - target
        if np.abs(diff).max() < tol:
            break
        up = diff > 0  # too flat: raise the precision
        lo = np.where(up, beta, lo)
        hi = np.where(up, hi, beta)
        step = np.where(up, np.where(np.isinf(hi), beta * 2, (beta + hi) / 2),
                        np.where(np.isinf(lo), beta / 2, (beta + lo) / 2))
        beta = np.where(np.abs(diff) < tol, beta, step) if per_row else step
    P = np.exp(-Dk * beta[:, None])
    P /= P.sum(1, keepdims=True)
    return P


def joint_probabilities(X: np.ndarray, perplexity: float, tol: float = 1e-5, steps: int = 100):
    """Symmetric joint P over 3·perplexity neighbours, as sparse (rows, cols, values) summing to 1.

    p_ij = (p_j|i + p_i|j) / 2n over the union of both neighbour lists, as one sparse matrix of both
    lists summing its duplicates: each pair has at most the two terms, whose sum does not depend on
    their order, so the bytes are those of any other way of adding them (70,000 points: 0.7 s where
    sorting the pairs' keys with `np.unique` took 2.1 s).
    """
    import scipy.sparse

    n = len(X)
    k = min(n - 1, int(3.0 * perplexity + 1))
    neighbours, Dk = nearest_neighbours(X, k)
    P = conditional_probabilities(Dk, perplexity, tol, steps).ravel()
    rows, cols = np.repeat(np.arange(n), k), neighbours.ravel()
    joint = scipy.sparse.csr_matrix((np.concatenate([P, P]), (np.concatenate([rows, cols]), np.concatenate([cols, rows]))),
                                    shape=(n, n))
    joint.sum_duplicates()  # and sorts each row's columns
    return np.repeat(np.arange(n), np.diff(joint.indptr)), joint.indices.astype(np.intp), joint.data / joint.data.sum()


def kl_divergence(P, Y: np.ndarray) -> float:
    """KL(P ‖ Q) of an embedding, P given sparse as (rows, cols, values); zero-P pairs add nothing.

    Exact: Z = Σ_i≠j w_ij over all pairs. Small n in one dense matrix; large n in row blocks on two
    threads, each over the upper triangle only (70,000 points: 2.5·10⁹ pairs, no n x n matrix; 2.8 s
    where all of them took 4.6), so any embedding can be scored.
    """
    rows, cols, vals = P
    Y = np.asarray(Y, dtype=np.float32)
    n = len(Y)
    blocks = _row_blocks(n, n)
    if len(blocks) == 1:
        num = squared_distances(Y)
        num += 1
        np.reciprocal(num, out=num)
        np.fill_diagonal(num, 0)
        q = num[rows, cols].astype(np.float64) / float(num.sum(dtype=np.float64))
    else:
        sq = (Y * Y).sum(1, keepdims=True)
        ones = np.ones_like(sq)
        left, right = np.hstack([Y, sq, ones]), np.hstack([-2 * Y, ones, sq + 1]).T.copy()

        def block_sum(block):
            """The block's rows against the columns from its first row on: W is symmetric, so the
            pairs right of the block's own square stand for their mirror images too."""
            s, e = block
            strip = left[s:e] @ right[:, s:]  # 1 + |y_i − y_j|², as in _Repulsion
            np.reciprocal(strip, out=strip)
            return 2 * float(strip.sum(dtype=np.float64)) - float(strip[:, :e - s].sum(dtype=np.float64))

        with threadpool_limits(1, user_api="blas"), ThreadPoolExecutor(2) as pool:
            z = sum(pool.map(block_sum, blocks)) - n  # the diagonal's w_ii = 1
        d2 = ((Y[rows].astype(np.float64) - Y[cols]) ** 2).sum(1)
        q = 1.0 / (1.0 + d2) / z
    return float((vals * np.log(np.maximum(vals, MACHINE_EPSILON) / np.maximum(q, MACHINE_EPSILON))).sum())


# ---------------------------------------------------------------- gradient

class _Repulsion:
    """Z = Σ_i≠j w_ij and, per point, [Σ_j w_ij², Σ_j w_ij² y_j] over all pairs, without the n x n matrix.

    W is symmetric, so only its upper strips are computed: for a block of rows I, the columns from
    I's first row on. The strip's products with the charges [1, y] give I's rows; its transposed
    products give the columns right of the block (pairs (j, i) with j > I). Each strip is small
    enough (512 KB) to stay in a core's L2 cache, so its passes (distances by one matrix product,
    reciprocal, sums, square, the products) run from cache. The products with the d + 1 charges are
    matrix-vector products, one per charge, and Z's sum is one more against a vector of ones: with
    the pinned Haswell kernels (see reproducible.py) a (rows x n)·(n x 3) matrix product costs 2.3x
    three vector products, and NumPy's float64 sum of a float32 strip 6.5x the vector product
    (n = 2,000: 2.4 ms an iteration, down from 3.5 ms). The diagonal (w_ii = 1) is subtracted from Z
    and cancels in w_ii²(y_i − y_i) by itself.
    """

    def __init__(self, n: int, dims: int, block_bytes: int = 1 << 19):
        self.n, self.rows = n, max(8, block_bytes // (4 * n))
        self.buffer = np.empty(self.rows * n, np.float32)
        self.ones = np.ones(n, np.float32)

    def __call__(self, Y: np.ndarray) -> tuple[float, np.ndarray]:
        n, ones = self.n, self.ones
        sq = (Y * Y).sum(1, keepdims=True)
        column = np.ones_like(sq)
        # 1 + |y_i − y_j|² for a strip in one product: [Y, |y|², 1] · [−2Y, 1, |y|² + 1]ᵀ
        left, right = np.hstack([Y, sq, column]), np.hstack([-2 * Y, column, sq + 1]).T.copy()
        charges = np.vstack([ones, Y.T])  # (d + 1, n): each charge contiguous
        push, columns = np.empty_like(charges), np.zeros_like(charges)
        z = -float(n)
        for s in range(0, n, self.rows):
            e = min(s + self.rows, n)
            strip = self.buffer[:(e - s) * (n - s)].reshape(e - s, n - s)
            np.matmul(left[s:e], right[:, s:], out=strip)
            np.reciprocal(strip, out=strip)
            z += 2 * float((strip @ ones[s:]).sum(dtype=np.float64)) - float(strip[:, :e - s].sum(dtype=np.float64))
            np.multiply(strip, strip, out=strip)
            for c, charge in enumerate(charges):
                np.matmul(strip, charge[s:], out=push[c, s:e])
                columns[c, e:] += charge[s:e] @ strip[:, e - s:]  # the pairs (j, i), j right of the block
        push += columns
        return z, push.T


class _Interpolation:
    """The same (Z, [Σ_j w_ij², Σ_j w_ij² y_j]) as `_Repulsion`, in O(n) by interpolation on a grid.

    The embedding's bounding square is cut into `boxes` intervals per axis (at least
    `min_intervals`, at most `interval` wide), each holding `points` equispaced nodes, so all nodes
    form one equispaced grid. Every point spreads its charges [1, y] onto the p^d nodes of its box
    with Lagrange weights; the kernel w² = (1 + r²)⁻² between all node pairs is a convolution, done
    by FFT on a grid padded to twice its size (no wrap-around); the nodes' potentials are
    interpolated back with the same weights (Linderman et al. 2019, as FIt-SNE and openTSNE do).
    Z = Σ_i≠j w_ij comes from the same transform of the charge 1 against the kernel w, summed in
    the frequency domain, where FIt-SNE spends a fourth charge |y|² and its inverse transform.
    With 3 nodes and at least 50 intervals of width at most 1 (openTSNE's defaults) the repulsive
    forces are within about 3 % of the exact ones (relative L2 norm) and Z within 1e-4; the error
    falls with the cube of the width.
    """

    def __init__(self, points: int = 3, min_intervals: int = 50, interval: float = 1.0):
        self.points, self.min_intervals, self.interval = points, min_intervals, interval
        nodes = (np.arange(points) + 0.5) / points  # inside a box, in units of its width
        self.nodes = nodes
        self.denominators = np.array([np.prod([nodes[m] - nodes[l] for l in range(points) if l != m])
                                      for m in range(points)])

    def _lagrange(self, u: np.ndarray) -> np.ndarray:
        """(p, *u.shape) weights of the p nodes at positions u ∈ [0, 1] within their boxes."""
        diffs = u[None] - self.nodes.reshape((-1,) + (1,) * u.ndim)
        weights = np.empty_like(diffs)
        for m in range(self.points):
            others = [l for l in range(self.points) if l != m]
            weights[m] = np.prod(diffs[others], axis=0) / self.denominators[m]
        return weights

    def stencil(self, Y: np.ndarray, lo: float, width: float, boxes: int) -> tuple[np.ndarray, np.ndarray]:
        """Each point's p^d grid nodes: their flat indices and Lagrange weights, both (n, p^d)."""
        n, d = Y.shape
        p, grid = self.points, boxes * self.points
        t = (Y - lo) / width
        box = np.minimum(t.astype(np.intp), boxes - 1)
        L = self._lagrange(t - box)  # (p, n, d)
        # built one axis at a time
        strides = grid ** np.arange(d - 1, -1, -1)
        index, weights = ((box * p) @ strides)[:, None], np.ones((n, 1))
        for a in range(d):
            index = (index[:, :, None] + np.arange(p) * strides[a]).reshape(n, -1)
            weights = (weights[:, :, None] * L[:, :, a].T[:, None, :]).reshape(n, -1)
        return index, weights

    @staticmethod
    def spreading(index: np.ndarray, weights: np.ndarray, nodes: int):
        """The sparse (nodes x points) matrix of a stencil: it spreads the points' charges onto the nodes
        and, transposed, gathers the nodes' potentials back at the points."""
        import scipy.sparse

        n, m = index.shape
        return scipy.sparse.csc_matrix((weights.ravel(), index.ravel(), np.arange(0, n * m + 1, m)), shape=(nodes, n))

    def grid(self, Y: np.ndarray) -> tuple[float, float, int, int]:
        """The grid for the embedding Y: its lower corner, interval width, intervals per axis and the
        padded grid's half length (2·half ≥ 2·nodes, even, a fast FFT size)."""
        import scipy.fft

        lo, hi = float(Y.min()), float(Y.max())
        boxes = max(self.min_intervals, int(np.ceil((hi - lo) / self.interval)))
        return lo, max(hi - lo, 1e-12) / boxes, boxes, scipy.fft.next_fast_len(boxes * self.points, real=True)

    def spectra(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The spectra of the kernels w² (the forces) and w (Z) on Y's padded grid.

        They depend on the grid alone, not on the charges, so another thread can compute them while
        the charges are spread and transformed. Both kernels are real and even on every axis, so their
        spectra are real: a DCT-I of one quadrant (a quarter of the work), mirrored."""
        import scipy.fft

        _, width, _, half = self.grid(Y)
        offset2 = (np.arange(half + 1) * (width / self.points)) ** 2
        r2 = offset2
        for _ in range(Y.shape[1] - 1):
            r2 = np.add.outer(r2, offset2)
        kernel = (1.0 / (1.0 + r2)).astype(np.float32)
        spectra = []
        for quadrant in (scipy.fft.dctn(kernel * kernel, type=1), scipy.fft.dctn(kernel, type=1)):
            for a in range(Y.shape[1] - 1):  # the rfft layout: full length on the leading axes (mirrored), half on the last
                quadrant = np.concatenate([quadrant, np.flip(quadrant, a).take(np.arange(1, half), a)], axis=a)
            spectra.append(quadrant)
        return spectra[0], spectra[1]

    def __call__(self, Y: np.ndarray, spectra=None) -> tuple[float, np.ndarray]:
        """Z and [Σ_j w_ij², Σ_j w_ij² y_j] per point. `spectra`, if given, is called for the kernels'
        spectra once the charges are transformed (`_descend` has them computed on the other thread)."""
        Y = Y.astype(np.float64)
        n, d = Y.shape
        p = self.points
        lo, width, boxes, half = self.grid(Y)
        grid = boxes * p
        index, weights = self.stencil(Y, lo, width, boxes)
        # one sparse (nodes x points) matrix spreads the charges onto the nodes and, transposed,
        # gathers the potentials back: (d + 1)·p^d·n multiply-adds each way, 13 ms at n = 70,000
        # where bincount and fancy indexing took 36 ms
        spreading = self.spreading(index, weights, grid ** d)
        charges = np.column_stack([np.ones(n), Y])  # (n, d + 1)
        spread = np.ascontiguousarray((spreading @ charges).T, dtype=np.float32)  # (d + 1, nodes)
        potentials, total = self._convolve(spread.reshape((d + 1,) + (grid,) * d), half,
                                           spectra or (lambda: self.spectra(Y)))
        phi = spreading.T @ potentials.reshape(d + 1, -1).T  # (n, d + 1)
        # Z less each point's interaction with itself as interpolated (its charge spread and gathered
        # back through its own box), not the exact w_ii = 1: where points are sparse the difference
        # is 3 % of Z (1,500 points over a range of 200). In the force it cancels by itself.
        nodes = np.stack(np.meshgrid(*[np.arange(p)] * d, indexing="ij"), -1).reshape(-1, d)
        local = 1.0 / (1.0 + ((nodes[:, None] - nodes[None]) ** 2).sum(-1) * (width / p) ** 2)
        z = total - float((weights * (weights @ local)).sum())
        return z, phi

    @staticmethod
    def _convolve(charges: np.ndarray, half: int, spectra) -> tuple[np.ndarray, float]:
        """Σ_nodes' w²(node − node') · charge(node') at every node, and Σ_node,node' w · c₀ c₀' (Z's sum).

        FFTs of size (2·half)^d in float32. The charges fill one corner of the padded grid and only
        that corner of the result is read, so the transforms skip the rest: along the last axis only
        the charged rows are transformed forward, and only the wanted rows backward. `spectra()` gives
        the kernels' spectra, asked for only once the charges are transformed. Z's double sum needs no
        inverse transform (Parseval).
        """
        import scipy.fft

        d, grid = charges.ndim - 1, charges.shape[-1]
        size = 2 * half
        F = scipy.fft.rfft(charges, n=size, axis=-1)
        for a in range(1, d):
            F = scipy.fft.fft(F, n=size, axis=a, overwrite_x=True)
        forces, potential = spectra()
        power = F[0].real ** 2 + F[0].imag ** 2
        power[..., 1:half] *= 2  # the half spectrum stands for its mirror image too
        total = float((power * potential).sum(dtype=np.float64)) / size ** d
        F *= forces
        for a in range(d - 1, 0, -1):
            F = scipy.fft.ifft(F, axis=a, overwrite_x=True).take(np.arange(grid), a)
        return scipy.fft.irfft(F, n=size, axis=-1)[..., :grid], total


class _Attraction:
    """Σ_j p_ij w_ij (y_i − y_j) over the sparse P only, and the w_ij, in blocks that both threads share.

    P's pairs come sorted by row, so each row's sum is one `np.add.reduceat` over its run of pairs,
    taken of the differences y_i − y_j that w_ij needs anyway, weighted in place (a sparse product
    with [1, Y] after them cost a third of the time, and y_i Σ_j p_ij w_ij − Σ_j p_ij w_ij y_j lost
    digits to cancellation: 6·10⁻⁴ relative error in float32 against float64, now 3·10⁻⁷).
    A 2-D embedding is read as complex numbers, one 8-byte element a point, so a pair takes one
    gather for y_i and one for y_j instead of one of each per axis; the squares are taken of the
    pairs' contiguous float32 view, since a pass over one axis of a complex array (stride 8) runs
    without SIMD. The gathers are `take(mode="clip")`: the indices are in range by construction.

    The pairs are cut into blocks of whole rows, about `block_pairs` each (half a megabyte of
    differences), so every pass over a block runs from cache, and a block's rows are summed exactly
    as over all pairs at once: the same bytes. `start(Y)` opens an iteration; then each thread that
    calls `work` takes blocks from one counter until none is left, so the thread that finishes the
    repulsion first takes the rest of the attraction (n = 70,000, 9·10⁶ pairs: 56 ms a call on one
    thread, from 76 ms unblocked, AVX2-only EPYC; docs/performance.md).
    """

    def __init__(self, n: int, dims: int, rows: np.ndarray, cols: np.ndarray, vals: np.ndarray,
                 block_pairs: int = 1 << 16, threads: int = 2):
        self.n, self.dims = n, dims
        self.vals = vals.astype(np.float32)
        self.rows, self.cols = rows.astype(np.intp), cols.astype(np.intp)  # converted once, not by every gather
        # at least one pair a row (every point has neighbours), as reduceat needs
        self.starts = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=n))[:-1]])
        ends = np.append(self.starts, len(vals))
        cuts = np.unique(np.append(np.searchsorted(ends, np.arange(0, len(vals), block_pairs)), n))
        # (first row, row after the last, first pair, pair after the last, the rows' starts in the block)
        self.blocks = [(int(r0), int(r1), int(ends[r0]), int(ends[r1]), self.starts[r0:r1] - ends[r0])
                       for r0, r1 in zip(cuts[:-1], cuts[1:])]
        longest = max(b - a for _, _, a, b, _ in self.blocks)
        self.w = np.empty(len(vals), np.float32)
        dtype, width = (np.complex64, 1) if dims == 2 else (np.float32, dims)
        self.force = np.empty((width, n), dtype)
        # per thread: the block's differences, the gathered y_j, the squares and p_ij w_ij
        self.buffers = [(np.empty((width, longest), dtype), np.empty(longest, dtype),
                         np.empty(2 * longest, np.float32), np.empty(longest, np.float32)) for _ in range(threads)]

    def start(self, Y: np.ndarray) -> None:
        """Open an iteration at the embedding Y: every block is to be computed once more."""
        if self.dims == 2:
            self.points = np.ascontiguousarray(Y, dtype=np.float32).view(np.complex64).ravel()
        else:
            self.points = np.ascontiguousarray(Y.T, dtype=np.float32)
        self.pending = iter(range(len(self.blocks)))  # next() on it is atomic under the GIL
        self.free = list(self.buffers)

    def work(self) -> None:
        """Compute blocks until none is left; any number of threads up to `threads` may call it at once."""
        buffers = self.free.pop()
        for b in self.pending:
            self._block(*self.blocks[b], *buffers)

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """The forces (n, dims) and the w_ij of the iteration, once every `work` call has returned."""
        force = self.force[0].view(np.float32).reshape(self.n, 2) if self.dims == 2 else self.force.T
        return force.copy(), self.w

    def __call__(self, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self.start(Y)
        self.work()
        return self.result()

    def _block(self, r0: int, r1: int, a: int, b: int, starts, delta, gathered, squares, pw) -> None:
        k = b - a
        delta, gathered, pw, w = delta[:, :k], gathered[:k], pw[:k], self.w[a:b]
        if self.dims == 2:
            np.take(self.points, self.rows[a:b], out=delta[0], mode="clip")
            np.subtract(delta[0], np.take(self.points, self.cols[a:b], out=gathered, mode="clip"), out=delta[0])
            pairs = delta[0].view(np.float32)
            squares = np.multiply(pairs, pairs, out=squares[:2 * k])
            np.add(squares[0::2], 1, out=w)
            w += squares[1::2]
            axes = [pairs[0::2], pairs[1::2]]
        else:
            for axis, y in zip(delta, self.points):
                np.take(y, self.rows[a:b], out=axis, mode="clip")
                np.subtract(axis, np.take(y, self.cols[a:b], out=gathered, mode="clip"), out=axis)
            np.multiply(delta[0], delta[0], out=w)
            w += 1
            for axis in delta[1:]:
                w += np.multiply(axis, axis, out=squares[:k])
            axes = list(delta)
        np.reciprocal(w, out=w)
        np.multiply(w, self.vals[a:b], out=pw)
        for axis in axes:
            axis *= pw
        self.force[:, r0:r1] = np.add.reduceat(delta, starts, axis=1)


class _MapField:
    """A fitted map's pull on points placed into it: per query point y, Z(y) = Σ_j w(y, y_j) and
    [Σ_j w², Σ_j w² y_j] over the map's points j, which stay fixed while new points move (`transform`).

    The map's charges are spread on a grid once and convolved once with both kernels, w and w²; each
    step then only interpolates the nodes' potentials at the query points, O(points) a step, for a
    map of 2,000 points as for 70,000 (against all of them exactly, 1,000 points placed into 3,000
    took 27 s). The grid reaches a margin beyond the map, twice as fine as the fit's (interval 0.5),
    since it is built only once.
    """

    def __init__(self, Y: np.ndarray, interval: float = 0.5):
        import scipy.fft

        Y = np.asarray(Y, np.float64)
        n, d = Y.shape
        self.grid_ = _Interpolation(interval=interval)
        p = self.grid_.points
        margin = 0.1 * float(np.ptp(Y)) + 5.0
        self.lo, hi = float(Y.min()) - margin, float(Y.max()) + margin
        self.boxes = max(self.grid_.min_intervals, int(np.ceil((hi - self.lo) / interval)))
        self.width = (hi - self.lo) / self.boxes
        grid = self.boxes * p
        index, weights = self.grid_.stencil(Y, self.lo, self.width, self.boxes)
        spreading = self.grid_.spreading(index, weights, grid ** d)
        charges = (spreading @ np.column_stack([np.ones(n), Y])).T.reshape((d + 1,) + (grid,) * d)
        size = 2 * scipy.fft.next_fast_len(grid, real=True)
        offsets = np.minimum(np.arange(size), size - np.arange(size)) * (self.width / p)  # circular distances
        r2 = offsets ** 2
        for _ in range(d - 1):
            r2 = np.add.outer(r2, offsets ** 2)
        axes = tuple(range(1, d + 1))
        spectrum = scipy.fft.rfftn(charges, s=(size,) * d, axes=axes)
        corner = (slice(None),) + (slice(0, grid),) * d
        w = 1.0 / (1.0 + r2)
        self.potential_w2 = scipy.fft.irfftn(spectrum * scipy.fft.rfftn(w * w), s=(size,) * d,
                                             axes=axes)[corner].reshape(d + 1, -1).T
        self.potential_w = scipy.fft.irfftn(spectrum[:1] * scipy.fft.rfftn(w), s=(size,) * d,
                                            axes=axes)[corner].reshape(-1)

    def __call__(self, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        Q = np.asarray(Q, np.float64)
        inside = np.clip(Q, self.lo, self.lo + self.boxes * self.width * (1 - 1e-9))
        index, weights = self.grid_.stencil(inside, self.lo, self.width, self.boxes)
        z = (weights * self.potential_w[index]).sum(1)
        push = np.einsum("nk,nkc->nc", weights, self.potential_w2[index])
        return z, push


# ---------------------------------------------------------------- optimizer

class TSNE(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """t-distributed stochastic neighbour embedding (van der Maaten & Hinton 2008), exact or FFT-interpolated.

    A scikit-learn estimator: `get_params`/`set_params`, `clone`, pipelines and grid searches work, and
    its parameters are checked in `fit` against `_parameter_constraints` by scikit-learn's validator.
    Beyond scikit-learn's, `transform` places new points into the fitted map, as openTSNE does.

    Parameters
    ----------
    n_components : int, default=2
        Dimensions of the map; the FFT method makes 1- or 2-D maps.
    perplexity : float, default=30.0
        Effective number of neighbours of each point; must be below the number of samples.
    early_exaggeration : float, default=12.0
        Factor on P during the first 250 iterations, which lets clusters form and separate.
    learning_rate : float or "auto", default="auto"
        "auto": max(n / early_exaggeration / 4, 50), per phase with the FFT method.
    max_iter : int, default=1000
        Iterations in all, the first min(250, max_iter) exaggerated.
    n_iter_without_progress : int, default=300
        Stop when the KL has not improved for this many iterations (checked every 50).
    min_grad_norm : float, default=1e-7
        Stop when the gradient's norm falls below this.
    init : {"pca", "random"} or ndarray of shape (n_samples, n_components), default="pca"
        "pca": the first principal components scaled to standard deviation 1e-4 (random where the
        data has no variance); an array is used as given.
    random_state : int, RandomState instance or None, default=0
        Seed of the random init and of PCA's sketch.
    method : {"auto", "exact", "fft"}, default="auto"
        The repulsion: exact O(n²), or interpolated on a grid in O(n); "auto" takes the FFT from
        4,000 points on in 1-D and 2-D.

    Attributes
    ----------
    embedding_ : ndarray of shape (n_samples, n_components)
        The map, in the input's float precision.
    kl_divergence_ : float
        KL(P ‖ Q) at the end (with the FFT method, from the interpolated Z, as openTSNE reports it).
    n_iter_ : int
        Index of the last iteration run, as scikit-learn reports it.
    method_ : str
        The repulsion used: "exact" or "fft".
    P_ : tuple of ndarrays (rows, cols, values)
        The sparse joint probabilities the map was fitted to.
    n_features_in_ : int
        Features seen in `fit`.

    Examples
    --------
    >>> import numpy as np
    >>> from latentlab.algorithms.tsne import TSNE
    >>> rng = np.random.default_rng(0)
    >>> X = np.vstack([rng.normal(0, 1, (30, 5)), rng.normal(8, 1, (30, 5))]).astype(np.float32)
    >>> tsne = TSNE(perplexity=10, max_iter=300).fit(X)
    >>> tsne.embedding_.shape, tsne.embedding_.dtype
    ((60, 2), dtype('float32'))
    >>> tsne.transform(X[:3] + 0.01).shape  # new points placed into the fitted map
    (3, 2)
    >>> TSNE(perplexity=-5).fit(X)
    Traceback (most recent call last):
    ...
    sklearn.utils._param_validation.InvalidParameterError: The 'perplexity' parameter of TSNE must be a float in the range (0.0, inf). Got -5 instead.
    """

    _parameter_constraints: dict = {
        "n_components": [Interval(Integral, 1, None, closed="left")],
        "perplexity": [Interval(Real, 0, None, closed="neither")],
        "early_exaggeration": [Interval(Real, 1, None, closed="left")],
        "learning_rate": [StrOptions({"auto"}), Interval(Real, 0, None, closed="neither")],
        "max_iter": [Interval(Integral, 1, None, closed="left")],
        "n_iter_without_progress": [Interval(Integral, -1, None, closed="left")],
        "min_grad_norm": [Interval(Real, 0, None, closed="left")],
        "init": [StrOptions({"pca", "random"}), np.ndarray],
        "random_state": ["random_state"],
        "method": [StrOptions({"auto", "exact", "fft"})],
    }

    def __init__(self, n_components: int = 2, *, perplexity: float = 30.0, early_exaggeration: float = 12.0,
                 learning_rate="auto", max_iter: int = 1000, n_iter_without_progress: int = 300,
                 min_grad_norm: float = 1e-7, init="pca", random_state=0, method: str = "auto"):
        self.n_components, self.perplexity, self.early_exaggeration = n_components, perplexity, early_exaggeration
        self.learning_rate, self.max_iter, self.init, self.random_state = learning_rate, max_iter, init, random_state
        self.n_iter_without_progress, self.min_grad_norm = n_iter_without_progress, min_grad_norm
        self.method = method

    def _method(self, n: int) -> str:
        if self.method == "fft" and self.n_components > 2:
            raise ValueError(f"method='fft' embeds in 1 or 2 dimensions, not n_components={self.n_components}; "
                             "use method='exact' or 'auto'")
        if self.method == "auto":
            return "fft" if n >= FFT_FROM and self.n_components <= 2 else "exact"
        return self.method

    def _initial(self, X):
        n = len(X)
        if isinstance(self.init, np.ndarray):
            return np.array(self.init, dtype=np.float32)
        if self.init == "pca" and X.shape[1] >= self.n_components:
            Y = PCA(self.n_components, random_state=seed_of(self.random_state)).fit_transform(X)
            spread = float(np.std(Y[:, 0]))
            if spread > 0:
                return (Y / spread * 1e-4).astype(np.float32)  # as scikit-learn: std 1e-4
            # no variance to follow (constant input): the random init, so the map stays finite
        rng = np.random.default_rng(seed_of(self.random_state))
        return (1e-4 * rng.standard_normal((n, self.n_components))).astype(np.float32)

    def _auto_rate(self, n: int) -> float:
        """scikit-learn's max(n / exaggeration / 4, 50), the floor only where it is a stable step: the
        attraction's curvature is about 8·exaggeration / n, so below n = 50·exaggeration a step of 50
        overshoots further every iteration (2 or 3 points flew apart to float overflow, then NaN)."""
        rate = n / self.early_exaggeration / 4
        return max(rate, 50) if n >= 50 * self.early_exaggeration else rate

    def _validate(self, X):
        """The checks that need the data as well as the parameters (those alone: `_parameter_constraints`)."""
        n = len(X)
        if self.perplexity >= n:
            raise ValueError(f"perplexity={self.perplexity} must be less than n_samples={n}")
        if isinstance(self.init, np.ndarray):
            if self.init.shape != (n, self.n_components):
                raise ValueError(f"init has shape {self.init.shape}; an array init must have shape "
                                 f"(n_samples, n_components) = ({n}, {self.n_components})")
            if not np.isfinite(self.init).all():
                raise ValueError("init contains NaN or infinity; give finite starting positions")

    @_fit_context(prefer_skip_nested_validation=True)
    def fit_transform(self, X, y=None):
        """Fit the map to X of shape (n_samples, n_features) and return it; float32 stays float32."""
        X = validate_data(self, X, dtype=[np.float32, np.float64], ensure_min_samples=2)
        self._validate(X)
        data = np.asarray(X, dtype=np.float32)
        n = len(data)
        self.method_ = self._method(n)
        self.P_ = joint_probabilities(data, self.perplexity)
        Y = self._initial(data)
        exploration = min(250, self.max_iter)
        with threadpool_limits(1, user_api="blas"):  # one BLAS thread per worker: the gradient parallelises
            if self.method_ == "exact":
                lr = self._auto_rate(n) if self.learning_rate == "auto" else self.learning_rate
                Y, update, _ = self._descend(Y, lr, 0, exploration, 0.5, self.early_exaggeration)
                Y, _, _ = self._descend(Y, lr, exploration, self.max_iter, 0.8, 1.0, update)
            else:  # openTSNE's steps: n / exaggeration without the gradient's factor 4, gains kept across phases
                lr = (lambda ex: max(n / ex / 4, 50)) if self.learning_rate == "auto" else (lambda ex: self.learning_rate)
                Y, update, gains = self._descend(Y, lr(self.early_exaggeration), 0, exploration, 0.5,
                                                 self.early_exaggeration)
                Y, _, _ = self._descend(Y, lr(1.0), exploration, self.max_iter, 0.8, 1.0, update, gains)
        self.embedding_ = Y.astype(X.dtype)
        self._fit_X = data
        if self.method_ == "exact":
            self.kl_divergence_ = kl_divergence(self.P_, Y)
        else:  # from the interpolated Z, as openTSNE reports it; `kl_divergence` gives the exact one
            self.kl_divergence_ = self._interpolated_kl(Y)
        return self.embedding_

    def fit(self, X, y=None):
        """Fit the map to X; the map is `embedding_`."""
        self.fit_transform(X)
        return self

    def transform(self, X, *, perplexity: float = 5.0, max_iter: int = 250, exaggeration: float = 1.5):
        """Place new points into the fitted map, which stays fixed; returns (n_new, n_components).

        As openTSNE's `transform`, with its defaults: each new point gets affinities p_j|i to its
        3·perplexity nearest fitted points (perplexity 5, so it lands by its nearest neighbours),
        starts at the median position of its 25 nearest (fewer when fewer are fitted) and descends
        its own KL(p_·|i ‖ q_·|i), where q_j|i = w_ij / Σ_j w_ij runs over the fitted points only, with
        P exaggerated 1.5 times, learning rate 0.1, momentum 0.5 for the first quarter of the steps
        and 0.8 after, and each gradient clipped to norm 0.25. The new points do not act on each
        other, so each one's place does not depend on which others are placed with it.
        """
        check_is_fitted(self, "embedding_")
        X = validate_data(self, X, dtype=[np.float32, np.float64], reset=False)
        n = len(self._fit_X)
        if not (isinstance(perplexity, Real) and 0 < perplexity < n):
            raise ValueError(f"perplexity={perplexity!r} must be a float in (0, n_fitted={n})")
        if not (isinstance(max_iter, Integral) and max_iter >= 0):
            raise ValueError(f"max_iter={max_iter!r} must be an int >= 0")
        if not (isinstance(exaggeration, Real) and exaggeration > 0):
            raise ValueError(f"exaggeration={exaggeration!r} must be a float > 0")
        reference = self.embedding_.astype(np.float64)
        k = min(n, max(25, int(3.0 * perplexity + 1)))
        neighbours, Dk = nearest_neighbours(np.asarray(X, np.float32), k, reference=self._fit_X)
        order = np.argsort(Dk, axis=1, kind="stable")
        neighbours, Dk = np.take_along_axis(neighbours, order, 1), np.take_along_axis(Dk, order, 1)
        Y = np.median(reference[neighbours[:, :25]], axis=1)
        near = min(k, int(3.0 * perplexity + 1))
        neighbours, P = neighbours[:, :near], exaggeration * conditional_probabilities(Dk[:, :near], perplexity,
                                                                                        per_row=True)
        field = _MapField(reference)  # built per call: transform leaves the estimator as fitted
        update, gains = np.zeros_like(Y), np.ones_like(Y)
        for it in range(max_iter):
            delta = Y[:, None, :] - reference[neighbours]
            w = 1.0 / (1.0 + (delta ** 2).sum(-1))
            z, push = field(Y)
            grad = 2 * (np.einsum("nk,nkd->nd", P * w, delta) - (push[:, :1] * Y - push[:, 1:]) / z[:, None])
            norms = np.sqrt((grad * grad).sum(1, keepdims=True))
            grad *= np.minimum(1.0, 0.25 / np.maximum(norms, 1e-12))
            inc = update * grad < 0
            gains = np.where(inc, gains + 0.2, np.maximum(gains * 0.8, 0.01))
            update = (0.5 if it < max_iter // 4 else 0.8) * update - 0.1 * gains * grad
            Y = Y + update
        return Y.astype(X.dtype)

    @property
    def _n_features_out(self):
        return self.n_components

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.non_deterministic = self.random_state is None
        return tags

    def _interpolated_kl(self, Y) -> float:
        rows, cols, vals = self.P_
        z, _ = _Interpolation()(Y)
        w = 1.0 / (1.0 + ((Y[rows].astype(np.float64) - Y[cols]) ** 2).sum(1))
        return float((vals * np.log(np.maximum(vals, MACHINE_EPSILON) * z / np.maximum(w, MACHINE_EPSILON))).sum())

    def _descend(self, Y, lr, start, stop, momentum, exaggeration, update=None, gains=None):
        """Gradient descent with momentum and gains. Each iteration's repulsion runs on a second thread
        while this one computes the FFT kernels' spectra for it, then blocks of the attraction; the
        second takes the blocks left when its repulsion is done, so both cores stay busy however the
        two parts' costs change as the map grows."""
        rows, cols, vals = self.P_
        vals = (vals * exaggeration).astype(np.float32)
        n, dims = Y.shape
        update = np.zeros_like(Y) if update is None else update
        gains = np.ones_like(Y) if gains is None else gains
        fft = self.method_ == "fft"
        repulsion = _Interpolation() if fft else _Repulsion(n, dims)
        attraction = _Attraction(n, dims, rows, cols, vals)

        def second_thread(Y, spectra: Future):
            forces = repulsion(Y, spectra.result) if fft else repulsion(Y)
            attraction.work()
            return forces

        with ThreadPoolExecutor(1) as background:
            best_error, best_iter = np.inf, start
            it = start
            for it in range(start, stop):
                attraction.start(Y)
                spectra = Future()
                pending = background.submit(second_thread, Y, spectra)
                if fft:  # the kernels' spectra here, while the second thread spreads and transforms the charges
                    try:
                        spectra.set_result(repulsion.spectra(Y))
                    except BaseException as error:
                        spectra.set_exception(error)
                        raise
                attraction.work()
                z, push = pending.result()
                attract, w = attraction.result()
                repulse = (push[:, :1] * Y - push[:, 1:]) / z
                grad = (4 * (attract - repulse)).astype(np.float32)
                # this serial part runs while the second thread waits: whole-array passes, no boolean
                # indexing, and a row's two squares added as two columns rather than by a reduction along
                # rows of length 2 (the same sums: 10 → 7 ms an iteration at n = 70,000)
                gains = np.where(update * grad < 0, gains + 0.2, gains * 0.8)
                np.clip(gains, 0.01, None, out=gains)
                update = momentum * update - lr * gains * grad
                if fft:  # openTSNE's guards for its larger steps: no step longer than 5, centred embedding
                    squares = update * update
                    norms = np.sqrt(squares[:, :1] + squares[:, 1:] if dims == 2 else squares)
                    update *= np.minimum(1.0, 5.0 / np.maximum(norms, 1e-12)).astype(np.float32)
                Y = Y + update
                if fft:
                    Y -= Y.mean(0)
                if (it + 1) % 50 == 0 or it == stop - 1:
                    error = float((vals * np.log(np.maximum(vals, MACHINE_EPSILON) * z / np.maximum(w, MACHINE_EPSILON))).sum())
                    if error < best_error:
                        best_error, best_iter = error, it
                    elif it - best_iter > self.n_iter_without_progress:
                        break
                    if float(np.linalg.norm(grad)) < self.min_grad_norm:
                        break
        self.n_iter_ = it  # the last iteration's index, as scikit-learn reports it
        return Y, update, gains
