"""Typical crops first, one per uncovered neighbourhood: a TypiClust-style selection in O(N k).

At low budgets the most informative crops to label are the typical ones (dense regions of the
embedding, where many unlabelled crops look alike), spread over the space, rather than the
outliers that k-Center picks first (Hacohen, Dekel & Weinshall, "Active learning on a budget",
ICML 2022: TypiClust). TypiClust clusters with k-means and needs the k nearest neighbours of
every point; ``activelearn.selection_extra.typiclust_selection`` does this with dense distance
blocks inside each cluster, O(N^2) in the worst case. Here everything comes from one FAISS kNN
search over the whole pool (``embeddings.index``: exact flat search up to ``KNN_FLAT_MAX``
crops, IVF beyond), so memory is O(N k) and no N x N matrix is ever held:

* typicality of row i = 1 / mean Euclidean distance to its ``n_neighbors`` nearest other rows
  (on L2-normalised features, the cosine geometry of the product's index);
* coverage: labelling or picking row i covers i and its ``cover_neighbors`` nearest rows; each
  row counts how many times it is covered;
* greedy: pick the candidate covered the fewest times, ties to the most typical, then the
  lowest row. While uncovered candidates remain this is "the most typical crop in an
  uncovered region"; once every candidate is covered it goes on with the least covered, so a
  large budget keeps spreading instead of piling onto the densest cluster.

The greedy walk uses a heap with lazy updates: O((N + budget k) log N) after the search.
Deterministic: the same inputs give the same picks (``random_state`` seeds only the IVF
training sample of large pools, and is recorded).
"""

from __future__ import annotations

import heapq

import numpy as np

from activelearn._checks import check_int
from activelearn.selection_types import (
    Selection,
    SelectionError,
    candidate_rows,
    empty_selection,
)
from embeddings.index import index_build, index_search

__all__ = ["STRATEGY", "knn_graph", "typical_selection", "typicality_scores"]

STRATEGY = "typical"

# TypiClust's k for the typicality. Coverage: measured on missouri-dev (3 rotated sequence
# folds, typical up to 60 labels then margin, crop top-1 at 100 labels): 20 neighbours 0.375,
# 15: 0.342, 10: 0.343; alone, 30 and 40 fell behind at 200 labels (a burst of one animal is
# ~10 crops, so 20 spans about two).
DEFAULT_NEIGHBORS = 20
DEFAULT_COVER_NEIGHBORS = 20

# Largest pool whose kNN graph is searched exactly. Every row is a query, so flat search costs
# O(N^2 d): 15 s for 30,000 x 256 on one shared core, ~11 min at the index's own 200,000 limit.
# Above this the graph comes from IVF (``embeddings.index``), whose cells cut that by ~50x; on
# 30,000 clustered vectors it gave the same 100 picks as the exact graph.
KNN_FLAT_MAX = 20_000

# Guards 1 / mean distance against exact duplicates (distance 0).
_EPS = 1e-12


def _unit_rows(features: object) -> np.ndarray:
    """(N, d) C-contiguous float32 copy of ``features`` with unit-length rows.

    Raises SelectionError for a non-2-D, non-real or non-finite array, or an all-zero row (it
    has no direction, so no cosine neighbours).
    """
    arr = np.asarray(features)
    if arr.ndim != 2 or arr.shape[1] < 1:
        raise SelectionError(f"features must be 2-D (N, d) with d >= 1, got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SelectionError(f"features must be real numbers, got dtype {arr.dtype}")
    x = np.array(arr, dtype=np.float64)
    if not np.isfinite(x).all():
        raise SelectionError("features contain NaN or infinite values")
    norms = np.linalg.norm(x, axis=1)
    if (norms == 0).any():
        raise SelectionError("features contain an all-zero row, which has no direction")
    return np.ascontiguousarray(x / norms[:, None], dtype=np.float32)


def knn_graph(
    features: np.ndarray, *, k: int, random_state: int = 0, flat_max: int = KNN_FLAT_MAX
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other rows of every row, by FAISS (``embeddings.index``).

    Args:
        features: (N, d) float32, unit rows (``_unit_rows``).
        k: neighbours per row, 0 <= k <= N - 1.
        random_state: seed of the IVF training sample (pools above ``flat_max`` only).
        flat_max: largest N searched exactly; above it IVF-Flat (approximate neighbours,
            exact distances).

    Returns:
        ``(distances (N, k) float64 Euclidean, neighbours (N, k) int64 rows)``, nearest first.
        A row is never its own neighbour, even among exact duplicates.
    """
    n_rows = features.shape[0]
    if k == 0:
        return np.zeros((n_rows, 0)), np.zeros((n_rows, 0), dtype=np.int64)
    index = index_build(
        features, np.arange(n_rows, dtype=np.int64), seed=random_state, flat_max=flat_max
    )
    sq, ids = index_search(index, features, k + 1)
    # Drop the row itself where the search found it; else (a duplicate took its place, or
    # IVF missed it) drop the farthest of the k + 1.
    is_self = ids == np.arange(n_rows)[:, None]
    drop = np.where(is_self.any(axis=1), is_self.argmax(axis=1), k)
    keep = np.ones_like(is_self)
    keep[np.arange(n_rows), drop] = False
    neighbours = ids[keep].reshape(n_rows, k)
    distances = np.sqrt(np.maximum(sq[keep].reshape(n_rows, k).astype(np.float64), 0.0))
    # IVF can return fewer than k hits (id -1): they count as the farthest possible, 2.
    distances[neighbours < 0] = 2.0
    return distances, neighbours


def typicality_scores(distances: np.ndarray) -> np.ndarray:
    """(N,) typicality from kNN ``distances`` (N, k): 1 / (mean distance + 1e-12); 1 if k = 0."""
    if distances.shape[1] == 0:
        return np.ones(distances.shape[0])
    scores: np.ndarray = 1.0 / (distances.mean(axis=1) + _EPS)
    return scores


def typical_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    cover_neighbors: int = DEFAULT_COVER_NEIGHBORS,
) -> Selection:
    """Most typical crops of the least covered neighbourhoods (module docstring).

    Args:
        features: (N, d) embeddings, finite, no all-zero row; L2-normalised here.
        labeled_mask: (N,) bool, rows already labelled: they cover their neighbourhoods.
        budget: most rows to pick, >= 1; fewer if fewer candidates.
        random_state: seed >= 0 (the IVF sample of pools over ``KNN_FLAT_MAX`` rows; recorded).
        candidate_mask: (N,) bool rows that may be picked (default all); never a labelled row.
            Rows outside it still count for typicality and coverage.
        probabilities, min_sq_distances: ignored (the strategies share one signature).
        n_neighbors: k of the typicality, >= 1 (capped at N - 1).
        cover_neighbors: neighbours a labelled or picked row covers besides itself, >= 0
            (capped at N - 1).

    Returns:
        Selection with ``strategy="typical"``, picks in order; ``distances`` hold each pick's
        typicality (1 / mean kNN distance; higher is denser).

    Raises:
        SelectionError (a ValueError): bad shapes/dtypes/values, as ``k_center_greedy``.

    Memory O(N (k + d)); time one kNN search (flat: O(N^2 d) flops in blocks; IVF beyond
    ``KNN_FLAT_MAX`` rows) plus O((N + budget k) log N).
    """
    budget = check_int(budget, name="budget", minimum=1, error=SelectionError)
    random_state = check_int(random_state, name="random_state", minimum=0, error=SelectionError)
    n_neighbors = check_int(n_neighbors, name="n_neighbors", minimum=1, error=SelectionError)
    cover_neighbors = check_int(
        cover_neighbors, name="cover_neighbors", minimum=0, error=SelectionError
    )
    x = _unit_rows(features)
    labeled, candidates = candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    if candidates.size == 0:
        return empty_selection(strategy=STRATEGY, random_state=random_state)
    k = min(max(n_neighbors, cover_neighbors), x.shape[0] - 1)
    distances, neighbours = knn_graph(x, k=k, random_state=random_state)
    typical = typicality_scores(distances[:, : min(n_neighbors, k)])
    cover = neighbours[:, : min(cover_neighbors, k)]
    picks = _greedy(typical, cover, labeled=labeled, candidates=candidates, budget=budget)
    return Selection(
        indices=picks,
        distances=typical[picks].astype(np.float32),
        strategy=STRATEGY,
        random_state=random_state,
    )


def _greedy(
    typical: np.ndarray,
    cover: np.ndarray,
    *,
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
) -> np.ndarray:
    """Picks in order: least covered candidate, ties most typical, then lowest row.

    ``cover`` (N, c) holds the rows each row covers besides itself (-1: none). A heap of
    (times covered, -typicality, row) with lazy updates: a row whose count rose is pushed
    again and its stale entry skipped when popped.
    """
    n_rows = typical.shape[0]
    counts = np.zeros(n_rows, dtype=np.int64)
    for labelled_row in np.flatnonzero(labeled).tolist():
        _cover(counts, labelled_row, cover)
    available = np.zeros(n_rows, dtype=bool)
    available[candidates] = True
    heap = [(int(counts[r]), -float(typical[r]), int(r)) for r in candidates.tolist()]
    heapq.heapify(heap)
    picks: list[int] = []
    while heap and len(picks) < budget:
        count, _, row = heapq.heappop(heap)
        if not available[row] or count != counts[row]:
            continue  # picked already, or a newer entry with its higher count is queued
        picks.append(row)
        available[row] = False
        for covered in _cover(counts, row, cover):
            if available[covered]:
                heapq.heappush(heap, (int(counts[covered]), -float(typical[covered]), covered))
    return np.asarray(picks, dtype=np.int64)


def _cover(counts: np.ndarray, row: int, cover: np.ndarray) -> list[int]:
    """Count ``row`` and the rows it covers once more; return the covered rows."""
    rows = [int(row), *(int(r) for r in cover[row] if r >= 0 and r != row)]
    counts[rows] += 1
    return rows
