"""Density-aware selection strategies, candidates for ``activelearn.selection``.

Plain k-Center greedy picks the point farthest from everything covered. On camera-trap
crops the far points are the crops with no near-duplicate (a lone frame, a cut-off
animal, a rare pose), while the dense regions are whole bursts of one animal. These
strategies weigh density in:

* ``k_center_robust``: k-Center greedy that never picks the sparsest candidates (largest
  distance to their k-th nearest neighbour); they still count as covered once labelled.
* ``typiclust_selection``: TypiClust (Hacohen, Dekel & Weinshall, ICML 2022): cluster
  into |L| + budget clusters, then take the most *typical* point (densest, by mean
  k-NN distance inside its cluster) of the largest clusters holding the fewest labels.
* ``probcover_selection``: ProbCover (Yehuda et al., NeurIPS 2022): greedy maximum
  coverage of delta-balls; each pick covers the most not-yet-covered points within
  ``delta`` of it.

Measured with ``manage.py al_benchmark`` on missouri-dev (3 sequence folds x 5 seeds,
frozen and fine-tuned embedding): none of them beats
plain ``k_center_greedy`` on average at 100-300 labels; robust k-Center, TypiClust and
ProbCover are often better at 40-80 labels (the cold start), where plain k-Center spends
most picks on the sparsest crops. Kept as optional strategies, not as the default.

All share the keyword-only signature of ``activelearn.selection.select`` (plus the
optional ``min_sq_distances`` that the k-Center cache adds there, ignored here) and
return a ``Selection``. Everything is numpy on row positions; randomness comes only
from ``random_state``. Pairwise distances are exact and chunked: O(N^2 d) time,
O(N * chunk) memory, fine up to some 10^5 rows on a CPU; beyond that the neighbour
searches should come from the project's FAISS index.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from sklearn.cluster import KMeans

from activelearn.selection import (
    Selection,
    SelectionError,
    _candidate_rows,
    _check_int,
    _empty_selection,
    k_center_greedy,
)
from activelearn.selection_stream import as_float32_features, row_sq_norms

__all__ = [
    "EXTRA_STRATEGIES",
    "k_center_robust",
    "knn_radius",
    "probcover_selection",
    "typiclust_selection",
]

# Rows per block of the pairwise-distance computations (memory: block x N float32).
_ROW_BLOCK = 2048


def _check_fraction(value: object, *, name: str) -> float:
    """Return ``value`` as a float in [0, 1) or raise SelectionError."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
        raise SelectionError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _sq_dist_block(x: np.ndarray, sq_norms: np.ndarray, rows: slice) -> np.ndarray:
    """(len(rows), N) float32 squared distances of ``x[rows]`` to every row, clipped at 0."""
    block = x[rows] @ x.T
    block *= -2.0
    block += sq_norms[rows, None]
    block += sq_norms[None, :]
    np.maximum(block, 0.0, out=block)
    return block


def knn_radius(features: np.ndarray, *, n_neighbors: int) -> np.ndarray:
    """(N,) float32 Euclidean distance of each row to its ``n_neighbors``-th nearest other row.

    A large radius means a sparse neighbourhood (an outlier). With fewer than
    ``n_neighbors`` other rows the farthest other row is used; a single row gets inf.

    Args:
        features: (N, d) finite numbers.
        n_neighbors: k >= 1.
    """
    n_neighbors = _check_int(n_neighbors, name="n_neighbors", minimum=1)
    x = as_float32_features(features)
    n_rows = x.shape[0]
    if n_rows < 2:
        return np.full(n_rows, np.inf, dtype=np.float32)
    k = min(n_neighbors, n_rows - 1)
    sq_norms = row_sq_norms(x)
    out = np.empty(n_rows, dtype=np.float32)
    for start in range(0, n_rows, _ROW_BLOCK):
        rows = slice(start, min(start + _ROW_BLOCK, n_rows))
        block = _sq_dist_block(x, sq_norms, rows)
        block[np.arange(block.shape[0]), np.arange(rows.start, rows.stop)] = np.inf  # self
        out[rows] = np.partition(block, k - 1, axis=1)[:, k - 1]
    radius: np.ndarray = np.sqrt(out)
    return radius


# --- Outlier-robust k-Center ---------------------------------------------------------------


def _outlier_mask(radius: np.ndarray, candidates: np.ndarray, fraction: float) -> np.ndarray:
    """(N,) bool: the ``ceil(fraction * len(candidates))`` candidates of largest radius.

    Ties at the cut are broken towards the higher row index (the lower index stays a
    candidate), so the mask is deterministic.
    """
    n_out = int(np.ceil(fraction * candidates.size))
    mask = np.zeros(radius.shape[0], dtype=bool)
    if n_out == 0:
        return mask
    # lexsort: primary key radius (descending), then row (descending) among ties.
    order = np.lexsort((-candidates, -radius[candidates]))
    mask[candidates[order[:n_out]]] = True
    return mask


def k_center_robust(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    outlier_fraction: float = 0.1,
    n_neighbors: int = 5,
) -> Selection:
    """k-Center greedy that skips the sparsest candidates.

    Each row's sparsity is its distance to its ``n_neighbors``-th nearest other row
    (``knn_radius``, over all N rows). The ``ceil(outlier_fraction * M)`` candidates of
    largest radius (M candidates; ties: higher row index excluded first) are set aside;
    ``k_center_greedy`` picks among the rest, with the labelled rows as covered set. If
    the rest holds fewer than ``budget`` rows, the set-aside ones follow, again in
    k-Center order (covered set: labelled rows plus the earlier picks).

    Args:
        features: (N, d) embeddings, finite.
        labeled_mask, budget, random_state, candidate_mask: as ``k_center_greedy``.
        probabilities, min_sq_distances: ignored (shared signature).
        outlier_fraction: share of the candidates set aside, in [0, 1); 0 gives exactly
            ``k_center_greedy``.
        n_neighbors: k of the sparsity radius, >= 1.

    Returns:
        Selection with ``strategy="k_center_robust"``; ``distances`` are the k-Center
        distances at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError: as ``k_center_greedy``, plus a bad fraction or n_neighbors.
    """
    fraction = _check_fraction(outlier_fraction, name="outlier_fraction")
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    x = as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    if candidates.size == 0:
        return _empty_selection(strategy="k_center_robust", random_state=random_state)
    outliers = _outlier_mask(knn_radius(x, n_neighbors=n_neighbors), candidates, fraction)
    inliers = np.zeros(x.shape[0], dtype=bool)
    inliers[candidates] = True
    inliers &= ~outliers
    first = _k_center_part(x, labeled, inliers, budget, random_state)
    covered = labeled.copy()
    covered[first.indices] = True
    rest = budget - first.indices.size
    second = _k_center_part(x, covered, outliers, rest, random_state)
    return Selection(
        indices=np.concatenate([first.indices, second.indices]),
        distances=np.concatenate([first.distances, second.distances]),
        strategy="k_center_robust",
        random_state=random_state,
    )


def _k_center_part(
    x: np.ndarray, covered: np.ndarray, allowed: np.ndarray, budget: int, random_state: int
) -> Selection:
    """``k_center_greedy`` over ``allowed`` rows, or an empty selection if none/no budget."""
    if budget < 1 or not (allowed & ~covered).any():
        return _empty_selection(strategy="k_center", random_state=random_state)
    return k_center_greedy(
        x, labeled_mask=covered, budget=budget, random_state=random_state, candidate_mask=allowed
    )


# --- TypiClust ------------------------------------------------------------------------------


def _typicality(x: np.ndarray, n_neighbors: int) -> np.ndarray:
    """(n,) typicality of each row of one cluster: 1 / mean distance to its k nearest
    other rows of the cluster (k = min(n_neighbors, n - 1)); a singleton gets 1."""
    n_rows = x.shape[0]
    if n_rows < 2:
        return np.ones(n_rows)
    k = min(n_neighbors, n_rows - 1)
    sq = _sq_dist_block(x, row_sq_norms(x), slice(0, n_rows)).astype(np.float64)
    np.fill_diagonal(sq, np.inf)
    nearest = np.sqrt(np.partition(sq, k - 1, axis=1)[:, :k])
    typical: np.ndarray = 1.0 / (nearest.mean(axis=1) + 1e-12)
    return typical


def _cluster(x: np.ndarray, n_clusters: int, random_state: int) -> np.ndarray:
    """(N,) int64 k-means cluster of each row (seeded; one k-means++ initialisation)."""
    model = KMeans(n_clusters=n_clusters, n_init=1, random_state=random_state)
    assignment: np.ndarray = model.fit_predict(x.astype(np.float64)).astype(np.int64)
    return assignment


def typiclust_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    max_clusters: int = 500,
    n_neighbors: int = 20,
) -> Selection:
    """TypiClust: the most typical point of the largest, least-labelled clusters.

    1. k-means (seeded with ``random_state``) into ``K = min(L + budget, max_clusters,
       N)`` clusters, L = labelled rows.
    2. ``budget`` times: among clusters that still hold a candidate, take the one with
       the fewest labelled-or-picked rows, ties to the larger cluster, then the lower
       cluster id; pick its candidate of highest typicality (1 / mean distance to its
       ``n_neighbors`` nearest rows of the same cluster; ties: lowest row index).

    Args:
        features: (N, d) embeddings, finite.
        labeled_mask, budget, random_state, candidate_mask: as ``k_center_greedy``.
        probabilities, min_sq_distances: ignored (shared signature).
        max_clusters: cap on K, >= 1 (the paper's 500 keeps k-means cheap).
        n_neighbors: k of the typicality, >= 1 (the paper uses 20).

    Returns:
        Selection with ``strategy="typiclust"``; ``distances`` hold each pick's
        typicality (higher = denser).
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    max_clusters = _check_int(max_clusters, name="max_clusters", minimum=1)
    n_neighbors = _check_int(n_neighbors, name="n_neighbors", minimum=1)
    x = as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    if candidates.size == 0:
        return _empty_selection(strategy="typiclust", random_state=random_state)
    n_clusters = min(int(labeled.sum()) + budget, max_clusters, x.shape[0])
    cluster = _cluster(x, n_clusters, random_state)
    typical = np.zeros(x.shape[0])
    for c in range(n_clusters):
        members = np.flatnonzero(cluster == c)
        typical[members] = _typicality(x[members], n_neighbors)
    picks = _typiclust_picks(cluster, typical, labeled, candidates, budget)
    return Selection(
        indices=picks,
        distances=typical[picks].astype(np.float32),
        strategy="typiclust",
        random_state=random_state,
    )


def _typiclust_picks(
    cluster: np.ndarray,
    typical: np.ndarray,
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
) -> np.ndarray:
    """The greedy cluster walk of ``typiclust_selection`` (step 2)."""
    n_clusters = int(cluster.max()) + 1
    sizes = np.bincount(cluster, minlength=n_clusters)
    counts = np.bincount(cluster[labeled], minlength=n_clusters)
    available = np.zeros(cluster.shape[0], dtype=bool)
    available[candidates] = True
    open_rows = np.bincount(cluster[candidates], minlength=n_clusters)
    picks: list[int] = []
    while len(picks) < min(budget, candidates.size):
        # lexsort: last key is primary -> fewest labels, then largest, then lowest id.
        eligible = np.flatnonzero(open_rows > 0)
        best = eligible[np.lexsort((eligible, -sizes[eligible], counts[eligible]))[0]]
        rows = np.flatnonzero(available & (cluster == best))
        pick = int(rows[np.argmax(typical[rows])])  # first maximum = lowest row
        picks.append(pick)
        available[pick] = False
        counts[best] += 1
        open_rows[best] -= 1
    return np.asarray(picks, dtype=np.int64)


# --- ProbCover ----------------------------------------------------------------------------------


def _ball_graph(x: np.ndarray, delta: float) -> np.ndarray:
    """(N, N) bool: row j within ``delta`` of row i (every row covers itself)."""
    sq_norms = row_sq_norms(x)
    n_rows = x.shape[0]
    graph = np.empty((n_rows, n_rows), dtype=bool)
    for start in range(0, n_rows, _ROW_BLOCK):
        rows = slice(start, min(start + _ROW_BLOCK, n_rows))
        graph[rows] = _sq_dist_block(x, sq_norms, rows) <= np.float32(delta) ** 2
    np.fill_diagonal(graph, True)
    return graph


def probcover_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    delta: float | None = None,
    delta_neighbors: int = 10,
) -> Selection:
    """ProbCover: greedy maximum coverage of balls of radius ``delta``.

    A row is covered when a labelled or picked row lies within ``delta`` (Euclidean) of
    it. Each pick is the candidate whose ball holds the most uncovered rows (ties:
    lowest row index). Once every row is covered, the remaining picks are uniform
    random among the candidates (``np.random.default_rng(random_state)``), as in the
    paper.

    Args:
        features: (N, d) embeddings, finite.
        labeled_mask, budget, random_state, candidate_mask: as ``k_center_greedy``.
        probabilities, min_sq_distances: ignored (shared signature).
        delta: ball radius > 0; None: the median over rows of ``knn_radius`` with
            ``delta_neighbors`` (a ball then holds about that many rows).
        delta_neighbors: k of the default radius, >= 1.

    Returns:
        Selection with ``strategy="probcover"``; ``distances`` hold how many uncovered
        rows each pick covered (0 for random fill-ins).

    Memory is O(N^2) bits of the ball graph: for small and medium pools only.
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    x = as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    if candidates.size == 0:
        return _empty_selection(strategy="probcover", random_state=random_state)
    if delta is None:
        delta = float(np.median(knn_radius(x, n_neighbors=delta_neighbors)))
    if not delta > 0:
        raise SelectionError(f"delta must be > 0, got {delta!r}")
    graph = _ball_graph(x, delta)
    picks, gains = _probcover_picks(graph, labeled, candidates, budget, random_state)
    return Selection(
        indices=picks, distances=gains, strategy="probcover", random_state=random_state
    )


def _probcover_picks(
    graph: np.ndarray,
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    random_state: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Greedy coverage walk of ``probcover_selection``: (picks, covered-count gains)."""
    covered = graph[labeled].any(axis=0)
    balls = graph[candidates]  # (M, N): the rows each candidate would cover
    # Uncovered rows in each candidate's ball, kept up to date as rows get covered.
    gain = balls.astype(np.int64) @ (~covered).astype(np.int64)
    available = np.zeros(graph.shape[0], dtype=bool)
    available[candidates] = True
    open_candidate = np.ones(candidates.size, dtype=bool)
    picks: list[int] = []
    gains: list[float] = []
    n_picks = min(budget, candidates.size)
    while len(picks) < n_picks:
        best = int(np.argmax(np.where(open_candidate, gain, -1)))  # first max: lowest row
        if gain[best] <= 0 or not open_candidate[best]:
            break
        pick = int(candidates[best])
        picks.append(pick)
        gains.append(float(gain[best]))
        available[pick], open_candidate[best] = False, False
        newly = graph[pick] & ~covered
        gain -= balls[:, newly].sum(axis=1)
        covered |= newly
    rest = np.flatnonzero(available)
    fill = np.random.default_rng(random_state).permutation(rest)[: n_picks - len(picks)]
    return (
        np.asarray([*picks, *fill.tolist()], dtype=np.int64),
        np.asarray([*gains, *[0.0] * fill.size], dtype=np.float32),
    )


EXTRA_STRATEGIES: dict[str, Callable[..., Selection]] = {
    "k_center_robust": k_center_robust,
    "typiclust": typiclust_selection,
    "probcover": probcover_selection,
}
