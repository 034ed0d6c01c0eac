"""How good is an embedding for camera traps? Leave-one-sequence-out kNN, and sequence folds.

Frames of one camera-trap sequence are near duplicates: a crop's nearest neighbour is
almost always another frame of its own sequence, which says nothing about unseen
sequences. ``knn_accuracy`` therefore only searches crops of *other* sequences.
``sequence_folds`` splits a labelled set by sequence for honest train/test experiments.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

METRICS: tuple[str, ...] = ("l2", "cosine")
# Query rows per distance block: bounds memory at about _CHUNK * N * 8 bytes.
_CHUNK = 512


@dataclass(frozen=True)
class KnnResult:
    """Leave-one-sequence-out kNN scores (fractions in [0, 1]).

    Attributes:
        top1: the nearest other-sequence crop has the query's label.
        top_k: the query's label is among the labels of the k nearest other-sequence
            crops (Recall@k of metric learning; the k neighbours are counted, not k
            distinct labels).
        vote: the majority label of the k nearest is right (ties: the label whose first
            neighbour is nearest); the accuracy of a plain k-NN classifier.
        k: neighbours considered for top_k and vote.
        n: queries scored.
        n_groups: distinct groups (sequences) among the scored queries.
        n_skipped: queries not scored because no other group exists to search.
        metric: "l2" or "cosine".
    """

    top1: float
    top_k: float
    vote: float
    k: int
    n: int
    n_groups: int
    n_skipped: int
    metric: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _codes(values: np.ndarray, name: str, n: int) -> np.ndarray:
    """(n,) int64 codes of any 1-D array of hashable values (labels, sequence ids)."""
    array = np.asarray(values)
    if array.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},), got {array.shape}")
    codes: np.ndarray = np.unique(array, return_inverse=True)[1].astype(np.int64)
    return codes.reshape(n)


def _matrix(vectors: np.ndarray, metric: str) -> np.ndarray:
    """float64 copy of ``vectors`` (rows normalised for cosine) for exact distances."""
    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; allowed values: {', '.join(METRICS)}")
    if vectors.ndim != 2 or vectors.shape[0] == 0 or not np.isfinite(vectors).all():
        raise ValueError(f"vectors must be a finite non-empty (N, d) array, got {vectors.shape}")
    matrix = vectors.astype(np.float64)
    if metric == "cosine":
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        if (norms == 0).any():
            raise ValueError("cosine metric: some vectors are all zero")
        matrix /= norms
    return matrix


def _neighbours(
    matrix: np.ndarray, groups: np.ndarray, rows: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest other-group rows for each of ``rows``: (indices (Q,k), valid (Q,k) bool).

    Squared Euclidean distances; same-group candidates are excluded by an infinite
    distance, so ``valid`` is False where fewer than k other-group rows exist.
    """
    squares = np.einsum("ij,ij->i", matrix, matrix)
    queries = matrix[rows]
    dist = squares[rows, None] + squares[None, :] - 2.0 * queries @ matrix.T
    dist[groups[rows, None] == groups[None, :]] = np.inf
    kk = min(k, matrix.shape[0])
    part = np.argpartition(dist, kk - 1, axis=1)[:, :kk]
    part_dist = np.take_along_axis(dist, part, axis=1)
    order = np.lexsort((part, part_dist), axis=1)  # by distance, then row index
    nearest = np.take_along_axis(part, order, axis=1)
    valid = np.isfinite(np.take_along_axis(part_dist, order, axis=1))
    return nearest, valid


def _vote(neighbour_labels: np.ndarray, valid: np.ndarray) -> int:
    """Majority label among the valid neighbours (nearest first); ties -> nearest label."""
    ranked = neighbour_labels[valid]
    labels, first, counts = np.unique(ranked, return_index=True, return_counts=True)
    best = np.flatnonzero(counts == counts.max())
    return int(labels[best[np.argmin(first[best])]])


def knn_accuracy(
    vectors: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    k: int = 5,
    queries: np.ndarray | None = None,
    metric: str = "l2",
) -> KnnResult:
    """Exact leave-one-sequence-out kNN accuracy of ``vectors``.

    For each query crop, the neighbours are searched among all crops of OTHER groups
    (the query's own sequence, itself included, is excluded), by Euclidean distance
    ("l2"; the FAISS index's ranking) or on L2-normalised rows ("cosine"). Ties in
    distance are broken by the lower row index.

    Args:
        vectors: (N, d) float embeddings or features.
        labels: (N,) class of each row (any hashable dtype).
        groups: (N,) sequence id of each row (any hashable dtype).
        k: neighbours for ``top_k`` and ``vote`` (>= 1).
        queries: optional (N,) bool mask of the rows to score (e.g. a held-out fold);
            every row, masked or not, serves as a neighbour candidate. Default: all.
        metric: "l2" or "cosine".

    Returns:
        KnnResult; queries with no other-group row are skipped and counted.

    Raises:
        ValueError: bad shapes/values, k < 1, or no query could be scored.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    matrix = _matrix(vectors, metric)
    n = matrix.shape[0]
    label_codes, group_codes = _codes(labels, "labels", n), _codes(groups, "groups", n)
    mask = np.ones(n, dtype=bool) if queries is None else np.asarray(queries, dtype=bool)
    if mask.shape != (n,):
        raise ValueError(f"queries must be a boolean mask of shape ({n},), got {mask.shape}")
    hits = np.zeros(3, dtype=np.int64)  # top1, top_k, vote
    scored: list[np.ndarray] = []
    for start in range(0, n, _CHUNK):
        rows = np.flatnonzero(mask[start : start + _CHUNK]) + start
        if rows.size == 0:
            continue
        nearest, valid = _neighbours(matrix, group_codes, rows, k)
        keep = valid[:, 0]
        hits += _count_hits(label_codes, rows[keep], nearest[keep], valid[keep])
        scored.append(rows[keep])
    done = np.concatenate(scored) if scored else np.empty(0, dtype=np.int64)
    if done.size == 0:
        raise ValueError("no query has a crop of another group to compare with")
    return KnnResult(
        top1=float(hits[0] / done.size),
        top_k=float(hits[1] / done.size),
        vote=float(hits[2] / done.size),
        k=k,
        n=int(done.size),
        n_groups=int(np.unique(group_codes[done]).size),
        n_skipped=int(mask.sum() - done.size),
        metric=metric,
    )


def _count_hits(
    labels: np.ndarray, rows: np.ndarray, nearest: np.ndarray, valid: np.ndarray
) -> np.ndarray:
    """(3,) counts of top-1, top-k and vote hits for the query ``rows``."""
    truth = labels[rows]
    neighbour_labels = labels[nearest]
    top1 = int((neighbour_labels[:, 0] == truth).sum())
    top_k = int(((neighbour_labels == truth[:, None]) & valid).any(axis=1).sum())
    vote = sum(_vote(neighbour_labels[i], valid[i]) == truth[i] for i in range(rows.size))
    return np.array([top1, top_k, vote], dtype=np.int64)


def sequence_folds(
    labels: np.ndarray, groups: np.ndarray, *, n_folds: int, seed: int
) -> np.ndarray:
    """Assign whole sequences to ``n_folds`` folds, stratified by species.

    Each group (sequence) takes its majority label (ties: the smallest label). For each
    label in sorted order, its groups are shuffled with ``np.random.default_rng(seed)``
    and dealt round-robin to the folds, continuing from where the previous label stopped
    so that folds stay balanced. A species with >= n_folds sequences has one in every
    fold; with 3 sequences per species and 3 folds, each fold holds one per species.

    Args:
        labels: (N,) class per crop; groups: (N,) sequence id per crop.
        n_folds: >= 2. seed: the only source of randomness.

    Returns:
        (N,) int64 fold index in [0, n_folds) of each crop; crops of one group share it.
    """
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    n = np.asarray(labels).shape[0]
    label_codes, group_codes = _codes(labels, "labels", n), _codes(groups, "groups", n)
    n_groups = int(group_codes.max()) + 1 if n else 0
    majority = np.array(
        [np.bincount(label_codes[group_codes == g]).argmax() for g in range(n_groups)],
        dtype=np.int64,
    )
    rng = np.random.default_rng(seed)
    group_fold = np.empty(n_groups, dtype=np.int64)
    dealt = 0
    for label in np.unique(majority):
        members = rng.permutation(np.flatnonzero(majority == label))
        group_fold[members] = (dealt + np.arange(members.size)) % n_folds
        dealt += members.size
    folds: np.ndarray = group_fold[group_codes]
    return folds
