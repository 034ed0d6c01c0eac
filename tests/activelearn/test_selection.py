"""Tests for activelearn.selection: k-Center greedy against a brute-force reference."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.selection import (
    STRATEGIES,
    Selection,
    SelectionError,
    k_center_greedy,
    random_selection,
    select,
)


def reference_k_center(
    features: np.ndarray,
    labeled: np.ndarray,
    candidates: np.ndarray,
    budget: int,
    first: int | None,
) -> tuple[list[int], list[float]]:
    """Brute force: full float64 distance matrix, greedy farthest-first, lowest index on ties.

    ``first`` is the seeded first pick, used only when nothing is labelled.
    """
    dist = np.sqrt(((features[:, None, :].astype(np.float64) - features[None, :, :]) ** 2).sum(-1))
    covered: list[int] = [int(i) for i in np.flatnonzero(labeled)]
    allowed = candidates & ~labeled
    picks: list[int] = []
    dists: list[float] = []
    if not covered:
        assert first is not None
        picks.append(first)
        dists.append(float("nan"))
        covered.append(first)
    while len(picks) < min(budget, int(allowed.sum())):
        best, best_d = -1, -1.0
        for i in np.flatnonzero(allowed):
            if i in picks:
                continue
            d = dist[i, covered].min()
            if d > best_d:
                best, best_d = int(i), float(d)
        picks.append(best)
        dists.append(best_d)
        covered.append(best)
    return picks, dists


def random_problem(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A tiny random instance: (features (N, d) float32, labeled (N,), candidates (N,))."""
    rng = np.random.default_rng(seed)
    n = int(rng.integers(4, 13))
    d = int(rng.integers(1, 5))
    features = rng.normal(size=(n, d)).astype(np.float32)
    labeled = rng.random(n) < 0.3
    candidates = rng.random(n) < 0.8
    return features, labeled, candidates


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("use_candidates", [False, True])
def test_k_center_matches_brute_force(seed: int, use_candidates: bool) -> None:
    features, labeled, candidates = random_problem(seed)
    if not use_candidates:
        candidates = np.ones_like(labeled)
    allowed = candidates & ~labeled
    for budget in (1, 2, 3, len(features) + 5):
        for chunk_size in (65536, 3, 1):
            got = k_center_greedy(
                features,
                labeled_mask=labeled,
                budget=budget,
                random_state=seed,
                candidate_mask=candidates if use_candidates else None,
                chunk_size=chunk_size,
            )
            first = None
            if not labeled.any() and allowed.any():
                # The documented seeding: default_rng(random_state) picks among candidates.
                first = int(np.random.default_rng(seed).choice(np.flatnonzero(allowed)))
            want, want_d = reference_k_center(features, labeled, candidates, budget, first)
            assert got.indices.tolist() == want
            np.testing.assert_allclose(
                got.distances, np.asarray(want_d, dtype=np.float32), rtol=1e-4, atol=1e-4
            )
            assert got.indices.dtype == np.int64 and got.distances.dtype == np.float32
            assert got.strategy == "k_center" and got.random_state == seed


def test_k_center_never_labelled_or_duplicated() -> None:
    features, _, _ = random_problem(3)
    labeled = np.zeros(len(features), dtype=bool)
    labeled[:2] = True
    got = k_center_greedy(features, labeled_mask=labeled, budget=100, random_state=0)
    assert sorted(got.indices.tolist()) == list(range(2, len(features)))
    # Distances to the covered set can only shrink as it grows.
    assert np.all(np.diff(got.distances) <= 1e-6)


def test_k_center_first_pick_is_seeded() -> None:
    rng = np.random.default_rng(0)
    features = rng.normal(size=(50, 3)).astype(np.float32)
    none = np.zeros(50, dtype=bool)
    firsts = {
        int(k_center_greedy(features, labeled_mask=none, budget=3, random_state=s).indices[0])
        for s in range(10)
    }
    assert len(firsts) > 1, "different seeds should give different first picks"
    assert firsts != {0}
    a = k_center_greedy(features, labeled_mask=none, budget=3, random_state=1)
    b = k_center_greedy(features, labeled_mask=none, budget=3, random_state=2)
    assert a.indices[0] != b.indices[0]
    assert np.isnan(a.distances[0]) and np.all(np.isfinite(a.distances[1:]))


def test_k_center_deterministic_for_seed() -> None:
    rng = np.random.default_rng(5)
    features = rng.normal(size=(200, 8)).astype(np.float32)
    none = np.zeros(200, dtype=bool)
    runs = [
        k_center_greedy(features, labeled_mask=none, budget=20, random_state=7) for _ in range(3)
    ]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.indices, runs[0].indices)
        np.testing.assert_array_equal(run.distances, runs[0].distances)


def test_k_center_chunking_identical() -> None:
    rng = np.random.default_rng(11)
    features = rng.normal(size=(60, 5)).astype(np.float32)
    labeled = rng.random(60) < 0.25
    full = k_center_greedy(features, labeled_mask=labeled, budget=15, random_state=0)
    chunked = k_center_greedy(
        features, labeled_mask=labeled, budget=15, random_state=0, chunk_size=3
    )
    np.testing.assert_array_equal(full.indices, chunked.indices)
    np.testing.assert_allclose(full.distances, chunked.distances, rtol=1e-5)


def test_k_center_ties_lowest_index() -> None:
    # Rows 1 and 2 are both at distance exactly 1 from the labelled row 0.
    features = np.array([[0.0], [-1.0], [1.0], [0.5]], dtype=np.float32)
    labeled = np.array([True, False, False, False])
    got = k_center_greedy(features, labeled_mask=labeled, budget=1, random_state=0)
    assert got.indices.tolist() == [1]
    # Exact duplicates of covered points (distance 0) are still picked in index order.
    dup = np.zeros((4, 2), dtype=np.float32)
    got = k_center_greedy(
        dup, labeled_mask=np.array([True, False, False, False]), budget=3, random_state=0
    )
    assert got.indices.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(got.distances, np.zeros(3, dtype=np.float32))


def test_k_center_budget_larger_than_candidates() -> None:
    features = np.arange(10, dtype=np.float32).reshape(5, 2)
    labeled = np.array([True, False, True, False, False])
    cand = np.array([True, True, True, True, False])
    got = k_center_greedy(
        features, labeled_mask=labeled, budget=10, random_state=0, candidate_mask=cand
    )
    assert sorted(got.indices.tolist()) == [1, 3]
    empty = k_center_greedy(features, labeled_mask=np.ones(5, dtype=bool), budget=3, random_state=0)
    assert empty.indices.shape == (0,) and empty.distances.shape == (0,)


def test_k_center_accepts_float64_features() -> None:
    rng = np.random.default_rng(2)
    features = rng.normal(size=(20, 3))
    labeled = np.zeros(20, dtype=bool)
    labeled[0] = True
    a = k_center_greedy(features, labeled_mask=labeled, budget=5, random_state=0)
    b = k_center_greedy(features.astype(np.float32), labeled_mask=labeled, budget=5, random_state=0)
    np.testing.assert_array_equal(a.indices, b.indices)


@pytest.mark.parametrize("func", [k_center_greedy, random_selection])
def test_bad_input_rejected(func: object) -> None:
    features = np.zeros((4, 2), dtype=np.float32)
    ok = np.zeros(4, dtype=bool)
    call = func  # type: ignore[assignment]
    with pytest.raises(SelectionError, match="budget"):
        call(features, labeled_mask=ok, budget=0, random_state=0)  # type: ignore[operator]
    with pytest.raises(ValueError, match="budget"):
        call(features, labeled_mask=ok, budget=-1, random_state=0)  # type: ignore[operator]
    with pytest.raises(SelectionError, match="labeled_mask"):
        call(features, labeled_mask=np.zeros(5, dtype=bool), budget=1, random_state=0)  # type: ignore[operator]
    with pytest.raises(SelectionError, match="bool"):
        call(features, labeled_mask=np.zeros(4, dtype=int), budget=1, random_state=0)  # type: ignore[operator]
    with pytest.raises(SelectionError, match="candidate_mask"):
        call(  # type: ignore[operator]
            features,
            labeled_mask=ok,
            budget=1,
            random_state=0,
            candidate_mask=np.ones(3, dtype=bool),
        )
    with pytest.raises(SelectionError, match="2-D"):
        call(np.zeros(4, dtype=np.float32), labeled_mask=ok, budget=1, random_state=0)  # type: ignore[operator]
    with pytest.raises(SelectionError, match="random_state"):
        call(features, labeled_mask=ok, budget=1, random_state=-1)  # type: ignore[operator]


def test_k_center_rejects_nan_and_bad_chunk() -> None:
    features = np.zeros((3, 2), dtype=np.float32)
    features[1, 1] = np.nan
    with pytest.raises(SelectionError, match="NaN"):
        k_center_greedy(features, labeled_mask=np.zeros(3, dtype=bool), budget=1, random_state=0)
    with pytest.raises(SelectionError, match="chunk_size"):
        k_center_greedy(
            np.zeros((3, 2)),
            labeled_mask=np.zeros(3, dtype=bool),
            budget=1,
            random_state=0,
            chunk_size=0,
        )


def test_random_selection_excludes_labelled_and_non_candidates() -> None:
    n = 100
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n, 2)).astype(np.float32)
    labeled = rng.random(n) < 0.3
    cand = rng.random(n) < 0.7
    allowed = set(np.flatnonzero(cand & ~labeled).tolist())
    for seed in range(5):
        got = random_selection(
            features, labeled_mask=labeled, budget=10, random_state=seed, candidate_mask=cand
        )
        assert len(got.indices) == 10 and len(set(got.indices.tolist())) == 10
        assert set(got.indices.tolist()) <= allowed
        assert np.all(np.isnan(got.distances)) and got.strategy == "random"
    all_of_them = random_selection(
        features, labeled_mask=labeled, budget=1000, random_state=0, candidate_mask=cand
    )
    assert set(all_of_them.indices.tolist()) == allowed
    a = random_selection(features, labeled_mask=labeled, budget=10, random_state=3)
    b = random_selection(features, labeled_mask=labeled, budget=10, random_state=3)
    c = random_selection(features, labeled_mask=labeled, budget=10, random_state=4)
    np.testing.assert_array_equal(a.indices, b.indices)
    assert a.indices.tolist() != c.indices.tolist()


def test_select_dispatch_and_unknown() -> None:
    features = np.eye(5, dtype=np.float32)
    labeled = np.array([True, False, False, False, False])
    got = select("k_center", features, labeled_mask=labeled, budget=2, random_state=0)
    assert isinstance(got, Selection) and got.strategy == "k_center"
    assert (
        select("random", features, labeled_mask=labeled, budget=2, random_state=0).strategy
        == "random"
    )
    assert set(STRATEGIES) == {"k_center", "random"}
    with pytest.raises(ValueError, match="k_center, random"):
        select("uncertainty", features, labeled_mask=labeled, budget=2, random_state=0)
