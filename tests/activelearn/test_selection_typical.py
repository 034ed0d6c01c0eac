"""Tests for activelearn.selection_typical against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.selection import STRATEGIES, SelectionError, select
from activelearn.selection_typical import knn_graph, typical_selection


def _points(seed: int, n: int = 40, d: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, d)).astype(np.float32)


def _reference(
    x: np.ndarray,
    labeled: np.ndarray,
    allowed: np.ndarray,
    budget: int,
    n_neighbors: int,
    cover_neighbors: int,
) -> tuple[list[int], np.ndarray]:
    """Brute force: full distance matrix, Python loops, the rule as the docstring states it."""
    unit = x.astype(np.float64) / np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    n = len(x)
    dist = np.sqrt(((unit[:, None, :] - unit[None, :, :]) ** 2).sum(-1))
    order = [sorted((j for j in range(n) if j != i), key=lambda j: dist[i, j]) for i in range(n)]
    k = min(n_neighbors, n - 1)
    typical = np.array(
        [1.0 / (np.mean([dist[i, j] for j in order[i][:k]]) + 1e-12) for i in range(n)]
    )
    counts = [0] * n

    def cover(row: int) -> None:
        for j in [row, *order[row][: min(cover_neighbors, n - 1)]]:
            counts[j] += 1

    for row in range(n):
        if labeled[row]:
            cover(row)
    open_rows = [i for i in range(n) if allowed[i] and not labeled[i]]
    picks: list[int] = []
    while open_rows and len(picks) < budget:
        best = min(open_rows, key=lambda i: (counts[i], -typical[i], i))
        picks.append(best)
        open_rows.remove(best)
        cover(best)
    return picks, typical


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(("n_neighbors", "cover_neighbors"), [(5, 3), (3, 6), (50, 0)])
def test_matches_brute_force(seed: int, n_neighbors: int, cover_neighbors: int) -> None:
    x = _points(seed)
    rng = np.random.default_rng(seed + 10)
    labeled = rng.random(40) < 0.2
    allowed = rng.random(40) < 0.8
    got = typical_selection(
        x,
        labeled_mask=labeled,
        budget=25,
        random_state=seed,
        candidate_mask=allowed,
        n_neighbors=n_neighbors,
        cover_neighbors=cover_neighbors,
    )
    want, typical = _reference(x, labeled, allowed, 25, n_neighbors, cover_neighbors)
    assert got.indices.tolist() == want
    np.testing.assert_allclose(got.distances, typical[want], rtol=1e-4)
    assert got.strategy == "typical" and got.random_state == seed


def test_first_picks_are_typical_and_spread() -> None:
    """Two dense blobs and scattered outliers: the first two picks are one blob centre each."""
    rng = np.random.default_rng(0)
    blob_a = np.array([1.0, 0, 0]) + rng.normal(scale=0.01, size=(15, 3))
    blob_b = np.array([0, 1.0, 0]) + rng.normal(scale=0.01, size=(15, 3))
    outliers = rng.normal(size=(6, 3))
    x = np.vstack([blob_a, blob_b, outliers]).astype(np.float32)
    got = typical_selection(
        x, labeled_mask=np.zeros(36, bool), budget=2, random_state=0, n_neighbors=5
    )
    assert sorted(int(i) // 15 for i in got.indices) == [0, 1]


def test_labelled_rows_cover_their_neighbourhood_and_are_never_picked() -> None:
    x = _points(3)
    labeled = np.zeros(40, bool)
    labeled[:10] = True
    got = typical_selection(x, labeled_mask=labeled, budget=40, random_state=0)
    assert sorted(got.indices.tolist()) == list(range(10, 40))  # all the rest, once each


def test_deterministic_and_registered_as_a_product_strategy() -> None:
    x = _points(4)
    labeled = np.zeros(40, bool)
    first = select("typical", x, labeled_mask=labeled, budget=7, random_state=5)
    again = select("typical", x, labeled_mask=labeled, budget=7, random_state=5)
    assert "typical" in STRATEGIES
    assert first.indices.tolist() == again.indices.tolist() and first.indices.size == 7


def test_exact_duplicates_are_not_their_own_neighbours() -> None:
    x = np.repeat(_points(5, n=4), 3, axis=0)  # every row three times
    distances, neighbours = knn_graph(x / np.linalg.norm(x, axis=1, keepdims=True), k=2)
    assert (neighbours != np.arange(12)[:, None]).all()
    np.testing.assert_allclose(distances, 0.0, atol=1e-3)
    got = typical_selection(x, labeled_mask=np.zeros(12, bool), budget=12, random_state=0)
    assert sorted(got.indices.tolist()) == list(range(12))


def test_large_pools_use_ivf_with_the_exact_neighbours_on_clustered_data() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 16))
    x = centres[rng.integers(0, 8, 600)] + 0.05 * rng.normal(size=(600, 16))
    x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    exact_d, exact = knn_graph(x, k=5)
    approx_d, approx = knn_graph(x, k=5, flat_max=100)  # 600 rows > 100: IVF
    recall = np.mean([len(set(a) & set(e)) / 5 for a, e in zip(approx, exact, strict=True)])
    assert recall > 0.9
    assert (approx_d >= exact_d - 1e-5).all()  # IVF may miss a neighbour, never find a nearer


def test_tiny_pools() -> None:
    one = typical_selection(
        np.ones((1, 3)), labeled_mask=np.zeros(1, bool), budget=3, random_state=0
    )
    assert one.indices.tolist() == [0]
    none_left = typical_selection(
        np.eye(3), labeled_mask=np.ones(3, bool), budget=2, random_state=0
    )
    assert none_left.indices.size == 0


@pytest.mark.parametrize(
    ("features", "kwargs", "message"),
    [
        (np.zeros((4, 3)), {}, "all-zero row"),
        (np.full((4, 3), np.nan), {}, "NaN"),
        (np.ones(4), {}, "2-D"),
        (np.eye(4), {"budget": 0}, "budget"),
        (np.eye(4), {"labeled_mask": np.zeros(4, int)}, "bool"),
        (np.eye(4), {"n_neighbors": 0}, "n_neighbors"),
        (np.eye(4), {"cover_neighbors": -1}, "cover_neighbors"),
    ],
)
def test_bad_input_is_refused(features: np.ndarray, kwargs: dict, message: str) -> None:
    args = {"labeled_mask": np.zeros(len(features), bool), "budget": 2, "random_state": 0}
    with pytest.raises(SelectionError, match=message):
        typical_selection(features, **{**args, **kwargs})
