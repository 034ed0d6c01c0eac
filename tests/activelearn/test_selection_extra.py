"""Tests for activelearn.selection_extra: each strategy against a brute-force reference."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from activelearn.selection import Selection, SelectionError, k_center_greedy
from activelearn.selection_extra import (
    EXTRA_STRATEGIES,
    k_center_robust,
    knn_radius,
    probcover_selection,
    typiclust_selection,
)

Strategy = Callable[..., Selection]


def _points(seed: int, n: int = 30, d: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _distances(x: np.ndarray) -> np.ndarray:
    """Brute force: (N, N) float64 Euclidean distances."""
    x64 = x.astype(np.float64)
    dist: np.ndarray = np.sqrt(((x64[:, None, :] - x64[None, :, :]) ** 2).sum(-1))
    return dist


def _reference_radius(x: np.ndarray, k: int) -> np.ndarray:
    dist = _distances(x)
    return np.array([sorted(np.delete(dist[i], i))[k - 1] for i in range(len(x))])


def _reference_farthest_first(
    dist: np.ndarray, covered: list[int], allowed: list[int], budget: int
) -> list[int]:
    """Greedy farthest-first over ``allowed`` with ``covered`` (non-empty) as centres."""
    picks: list[int] = []
    allowed = [i for i in allowed if i not in covered]
    while allowed and len(picks) < budget:
        gaps = [min(dist[i, c] for c in covered + picks) for i in allowed]
        best = allowed[int(np.argmax(gaps))]
        picks.append(best)
        allowed.remove(best)
    return picks


def _reference_robust(
    x: np.ndarray, labeled: np.ndarray, budget: int, fraction: float, k: int
) -> list[int]:
    radius = _reference_radius(x, k)
    candidates = [i for i in range(len(x)) if not labeled[i]]
    n_out = int(np.ceil(fraction * len(candidates)))
    by_sparsity = sorted(candidates, key=lambda i: (-radius[i], -i))
    outliers = set(by_sparsity[:n_out])
    dist = _distances(x)
    covered = [int(i) for i in np.flatnonzero(labeled)]
    inliers = [i for i in candidates if i not in outliers]
    first = _reference_farthest_first(dist, covered, inliers, budget)
    rest = _reference_farthest_first(dist, covered + first, sorted(outliers), budget - len(first))
    return first + rest


def _reference_probcover(
    x: np.ndarray, labeled: np.ndarray, budget: int, delta: float
) -> list[int]:
    """Brute force with Python sets; stops where nothing is left to cover."""
    dist = _distances(x)
    balls = [set(np.flatnonzero(dist[i] <= delta).tolist()) | {i} for i in range(len(x))]
    covered: set[int] = set().union(*(balls[i] for i in np.flatnonzero(labeled)))
    candidates = [i for i in range(len(x)) if not labeled[i]]
    picks: list[int] = []
    while candidates and len(picks) < budget:
        gains = [len(balls[i] - covered) for i in candidates]
        if max(gains) == 0:
            break
        best = candidates[int(np.argmax(gains))]
        picks.append(best)
        candidates.remove(best)
        covered |= balls[best]
    return picks


def test_knn_radius_matches_brute_force() -> None:
    x = _points(0)
    for k in (1, 3, 29, 40):
        expected = _reference_radius(x, min(k, len(x) - 1))
        np.testing.assert_allclose(knn_radius(x, n_neighbors=k), expected, rtol=1e-4, atol=1e-4)
    assert knn_radius(x[:1], n_neighbors=3).tolist() == [np.inf]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.6])
def test_k_center_robust_matches_brute_force(seed: int, fraction: float) -> None:
    x = _points(seed)
    labeled = np.zeros(len(x), dtype=bool)
    labeled[[3, 17]] = True
    got = k_center_robust(
        x, labeled_mask=labeled, budget=26, random_state=0, outlier_fraction=fraction
    )
    assert got.indices.tolist() == _reference_robust(x, labeled, 26, fraction, 5)
    assert got.strategy == "k_center_robust"


def test_k_center_robust_without_outliers_is_k_center() -> None:
    x, labeled = _points(1), np.zeros(30, dtype=bool)
    plain = k_center_greedy(x, labeled_mask=labeled, budget=10, random_state=4)
    robust = k_center_robust(
        x, labeled_mask=labeled, budget=10, random_state=4, outlier_fraction=0.0
    )
    assert robust.indices.tolist() == plain.indices.tolist()


def test_k_center_robust_skips_a_far_outlier() -> None:
    # Two tight groups and one point far from everything: plain k-Center takes it first.
    rng = np.random.default_rng(0)
    groups = [rng.normal(c, 0.05, size=(10, 2)) for c in ((0.0, 0.0), (3.0, 0.0))]
    x = np.vstack([*groups, [[0.0, 40.0]]]).astype(np.float32)
    labeled = np.zeros(len(x), dtype=bool)
    labeled[0] = True
    plain = k_center_greedy(x, labeled_mask=labeled, budget=1, random_state=0)
    robust = k_center_robust(x, labeled_mask=labeled, budget=1, random_state=0)
    assert plain.indices.tolist() == [20]
    assert 10 <= robust.indices[0] < 20


@pytest.mark.parametrize("seed", range(5))
def test_probcover_matches_brute_force(seed: int) -> None:
    x = _points(seed, n=25)
    labeled = np.zeros(len(x), dtype=bool)
    labeled[[0, 9]] = True
    delta = 1.2
    expected = _reference_probcover(x, labeled, 23, delta)
    got = probcover_selection(x, labeled_mask=labeled, budget=23, random_state=seed, delta=delta)
    assert got.indices[: len(expected)].tolist() == expected
    # Once all is covered the rest are random candidates, each picked once.
    rest = got.indices[len(expected) :].tolist()
    assert len(set(got.indices.tolist())) == 23 and not set(rest) & {0, 9}
    assert got.distances[len(expected) :].tolist() == [0.0] * len(rest)


def test_typiclust_takes_the_centre_of_each_blob() -> None:
    # Three blobs (sizes 12, 8, 5) of a centre point and a ring around it: with nothing
    # labelled and budget 3 there are 3 clusters, one pick each, the centre the most typical.
    rings = []
    for centre, size in (((0.0, 0.0), 12), ((10.0, 0.0), 8), ((0.0, 10.0), 5)):
        angles = np.linspace(0, 2 * np.pi, size - 1, endpoint=False)
        ring = np.c_[np.cos(angles), np.sin(angles)] * 0.5 + centre
        rings.append(np.vstack([centre, ring]))
    x = np.vstack(rings).astype(np.float32)
    labeled = np.zeros(len(x), dtype=bool)
    got = typiclust_selection(x, labeled_mask=labeled, budget=3, random_state=0)
    assert got.indices.tolist() == [0, 12, 20]  # largest cluster first


def test_typiclust_prefers_clusters_without_labels() -> None:
    x = np.vstack([np.zeros((6, 2)), np.full((4, 2), 5.0)]).astype(np.float32)
    x += np.random.default_rng(0).normal(0, 0.01, x.shape).astype(np.float32)
    labeled = np.zeros(len(x), dtype=bool)
    labeled[0] = True  # the larger blob is covered: the small one goes first
    got = typiclust_selection(x, labeled_mask=labeled, budget=1, random_state=0)
    assert got.indices[0] >= 6


ALL_EXTRA = list(EXTRA_STRATEGIES.values())


@pytest.mark.parametrize("strategy", ALL_EXTRA)
def test_shared_contract(strategy: Strategy) -> None:
    x = _points(2, n=20)
    labeled = np.zeros(20, dtype=bool)
    labeled[[1, 2]] = True
    allowed = np.zeros(20, dtype=bool)
    allowed[5:15] = True
    allowed[1] = True  # labelled: must still never be picked
    kwargs: dict[str, Any] = {"labeled_mask": labeled, "random_state": 3}
    got = strategy(x, budget=4, candidate_mask=allowed, **kwargs)
    assert got.indices.dtype == np.int64 and got.distances.dtype == np.float32
    assert len(set(got.indices.tolist())) == 4
    assert all(5 <= i < 15 for i in got.indices)
    again = strategy(x, budget=4, candidate_mask=allowed, **kwargs)
    assert np.array_equal(again.indices, got.indices)  # deterministic for a seed
    everything = strategy(x, budget=50, **kwargs)
    assert sorted(everything.indices.tolist()) == [i for i in range(20) if i not in (1, 2)]
    assert strategy(x, budget=3, candidate_mask=labeled, **kwargs).indices.size == 0
    # The k-Center cache argument of select() is accepted and ignored.
    with_cache = strategy(
        x, budget=4, candidate_mask=allowed, min_sq_distances=np.zeros(20, np.float32), **kwargs
    )
    assert np.array_equal(with_cache.indices, got.indices)


@pytest.mark.parametrize("strategy", ALL_EXTRA)
@pytest.mark.parametrize(
    "bad",
    [
        {"budget": 0},
        {"random_state": -1},
        {"labeled_mask": np.zeros(20, dtype=np.int64)},
        {"features": np.full((20, 2), np.nan)},
    ],
)
def test_rejects_bad_input(strategy: Strategy, bad: dict[str, Any]) -> None:
    args: dict[str, Any] = {
        "features": _points(0, n=20, d=2),
        "labeled_mask": np.zeros(20, dtype=bool),
        "budget": 2,
        "random_state": 0,
        **bad,
    }
    features = args.pop("features")
    with pytest.raises(SelectionError):
        strategy(features, **args)


def test_rejects_bad_parameters() -> None:
    x, labeled = _points(0), np.zeros(30, dtype=bool)
    with pytest.raises(SelectionError):
        k_center_robust(x, labeled_mask=labeled, budget=2, random_state=0, outlier_fraction=1.0)
    with pytest.raises(SelectionError):
        probcover_selection(x, labeled_mask=labeled, budget=2, random_state=0, delta=0.0)
    with pytest.raises(SelectionError):
        typiclust_selection(x, labeled_mask=labeled, budget=2, random_state=0, max_clusters=0)
