"""Tests for embeddings.evaluation: leave-one-sequence-out kNN against a brute-force reference."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from embeddings.evaluation import knn_accuracy, sequence_folds


def _reference(
    vectors: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    k: int,
    queries: np.ndarray,
    metric: str,
) -> tuple[float, float, float, int]:
    """Loop-by-loop definition: (top1, top_k, vote, n scored)."""
    x = vectors.astype(np.float64)
    if metric == "cosine":
        x = x / np.linalg.norm(x, axis=1, keepdims=True)
    top1 = top_k = vote = n = 0
    for i in np.flatnonzero(queries):
        others = [j for j in range(len(x)) if groups[j] != groups[i]]
        if not others:
            continue
        ranked = sorted(others, key=lambda j: (float(np.sum((x[i] - x[j]) ** 2)), j))[:k]
        near = [labels[j] for j in ranked]
        counts = Counter(near)
        best = max(counts.values())
        winner = next(label for label in near if counts[label] == best)
        n += 1
        top1 += near[0] == labels[i]
        top_k += labels[i] in near
        vote += winner == labels[i]
    return top1 / n, top_k / n, vote / n, n


@pytest.mark.parametrize("k", [1, 3, 5, 40])
@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_matches_brute_force(k: int, metric: str) -> None:
    rng = np.random.default_rng(k)
    vectors = rng.normal(size=(37, 4)).astype(np.float32)
    labels = rng.integers(0, 4, size=37)
    groups = rng.integers(0, 9, size=37)
    queries = rng.random(37) < 0.7
    result = knn_accuracy(vectors, labels, groups, k=k, queries=queries, metric=metric)
    top1, top_k, vote, n = _reference(vectors, labels, groups, k, queries, metric)
    assert result.n == n == int(queries.sum())
    assert result.top1 == pytest.approx(top1)
    assert result.top_k == pytest.approx(top_k)
    assert result.vote == pytest.approx(vote)
    assert result.n_groups == len(set(groups[queries].tolist()))


def test_own_sequence_is_never_a_neighbour() -> None:
    # Frames 0 and 1 are one sequence of a fox, nearly identical; the only other
    # sequence is a deer right next to them. Within-sequence search would score 1.0.
    vectors = np.array([[0.0, 0.0], [0.01, 0.0], [0.1, 0.0], [5.0, 5.0]], dtype=np.float32)
    labels = np.array(["fox", "fox", "deer", "fox"])
    groups = np.array(["s1", "s1", "s2", "s3"])
    result = knn_accuracy(vectors, labels, groups, k=1)
    # fox s1 frames -> nearest other-sequence crop is the deer: wrong (x2);
    # deer -> nearest is a s1 fox: wrong; fox s3 -> nearest other is the deer: wrong.
    assert result.top1 == 0.0
    assert result.n == 4 and result.n_groups == 3


def test_top_k_counts_neighbours_not_distinct_labels() -> None:
    # Query 0's four nearest other-sequence crops are cat, cat, cat, dog.
    vectors = np.array([[0.0], [1.0], [1.1], [1.2], [1.3]], dtype=np.float32)
    labels = np.array([0, 1, 1, 1, 0])
    groups = np.array([0, 1, 2, 3, 4])
    queries = np.array([True, False, False, False, False])
    assert knn_accuracy(vectors, labels, groups, k=3, queries=queries).top_k == 0.0
    assert knn_accuracy(vectors, labels, groups, k=4, queries=queries).top_k == 1.0


def test_vote_breaks_ties_by_the_nearest_label() -> None:
    vectors = np.array([[0.0], [1.0], [2.0], [3.0], [4.0]], dtype=np.float32)
    labels = np.array([7, 7, 8, 8, 7])
    groups = np.arange(5)
    queries = np.array([True, False, False, False, False])
    # 4 nearest: 7, 8, 8, 7 -> 2:2 tie, the nearest (7) wins.
    assert knn_accuracy(vectors, labels, groups, k=4, queries=queries).vote == 1.0
    # 3 nearest: 7, 8, 8 -> 8 wins.
    assert knn_accuracy(vectors, labels, groups, k=3, queries=queries).vote == 0.0


def test_queries_without_other_groups_are_skipped() -> None:
    vectors = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="another group"):
        knn_accuracy(vectors, np.array([0, 1, 0]), np.array([5, 5, 5]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"k": 0}, "k must be"),
        ({"metric": "manhattan"}, "unknown metric"),
        ({"queries": np.array([True])}, "queries must be"),
    ],
)
def test_bad_arguments(kwargs: dict[str, object], message: str) -> None:
    vectors = np.eye(3, dtype=np.float32)
    with pytest.raises(ValueError, match=message):
        knn_accuracy(vectors, np.array([0, 1, 0]), np.array([0, 1, 2]), **kwargs)  # type: ignore[arg-type]


def test_mismatched_labels_rejected() -> None:
    with pytest.raises(ValueError, match="labels must have shape"):
        knn_accuracy(np.eye(3, dtype=np.float32), np.array([0, 1]), np.array([0, 1, 2]))


def _crops_of_sequences(n_labels: int, seqs_per_label: int) -> tuple[np.ndarray, np.ndarray]:
    """labels/groups of crops: every sequence has 1-4 crops of one label."""
    labels, groups = [], []
    for label in range(n_labels):
        for s in range(seqs_per_label):
            size = 1 + (label + s) % 4
            labels += [label] * size
            groups += [f"L{label}S{s}"] * size
    return np.array(labels), np.array(groups)


def test_sequence_folds_keep_sequences_whole_and_stratify() -> None:
    labels, groups = _crops_of_sequences(n_labels=5, seqs_per_label=3)
    folds = sequence_folds(labels, groups, n_folds=3, seed=1)
    assert folds.shape == labels.shape and folds.dtype == np.int64
    for group in np.unique(groups):
        assert np.unique(folds[groups == group]).size == 1
    for label in range(5):
        # Three sequences per species and three folds: one sequence of it per fold.
        per_fold = {f: set(groups[(labels == label) & (folds == f)].tolist()) for f in range(3)}
        assert all(len(seqs) == 1 for seqs in per_fold.values())


def test_sequence_folds_deterministic_and_seeded() -> None:
    labels, groups = _crops_of_sequences(n_labels=6, seqs_per_label=4)
    a = sequence_folds(labels, groups, n_folds=3, seed=0)
    assert np.array_equal(a, sequence_folds(labels, groups, n_folds=3, seed=0))
    assert not np.array_equal(a, sequence_folds(labels, groups, n_folds=3, seed=5))
    # Round-robin across species keeps the folds within one sequence of each other.
    per_fold = [np.unique(groups[a == f]).size for f in range(3)]
    assert max(per_fold) - min(per_fold) <= 1


def test_sequence_folds_needs_two_folds() -> None:
    with pytest.raises(ValueError, match="n_folds"):
        sequence_folds(np.array([0]), np.array([0]), n_folds=1, seed=0)
