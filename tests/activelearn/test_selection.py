"""Tests for activelearn.selection: every strategy against a brute-force reference."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from activelearn.selection import (
    STRATEGIES,
    Selection,
    SelectionError,
    confidence_selection,
    entropy_selection,
    hybrid_selection,
    k_center_greedy,
    margin_selection,
    min_sq_distances_update,
    random_selection,
    select,
)

UNCERTAINTY = {
    "confidence": confidence_selection,
    "margin": margin_selection,
    "entropy": entropy_selection,
}
ALL_STRATEGIES = [
    k_center_greedy,
    random_selection,
    confidence_selection,
    margin_selection,
    entropy_selection,
    hybrid_selection,
]


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


@pytest.mark.parametrize("func", ALL_STRATEGIES)
def test_bad_input_rejected(func: Callable[..., Selection]) -> None:
    features = np.zeros((4, 2), dtype=np.float32)
    ok = np.zeros(4, dtype=bool)
    # Valid probabilities, so that every strategy fails on the argument under test.
    probs = np.full((4, 2), 0.5, dtype=np.float32)

    def call(*args: object, **kwargs: object) -> Selection:
        return func(*args, probabilities=probs, **kwargs)

    with pytest.raises(SelectionError, match="budget"):
        call(features, labeled_mask=ok, budget=0, random_state=0)
    with pytest.raises(ValueError, match="budget"):
        call(features, labeled_mask=ok, budget=-1, random_state=0)
    with pytest.raises(SelectionError, match="labeled_mask"):
        call(features, labeled_mask=np.zeros(5, dtype=bool), budget=1, random_state=0)
    with pytest.raises(SelectionError, match="bool"):
        call(features, labeled_mask=np.zeros(4, dtype=int), budget=1, random_state=0)
    with pytest.raises(SelectionError, match="candidate_mask"):
        call(
            features,
            labeled_mask=ok,
            budget=1,
            random_state=0,
            candidate_mask=np.ones(3, dtype=bool),
        )
    with pytest.raises(SelectionError, match="2-D"):
        call(np.zeros(4, dtype=np.float32), labeled_mask=ok, budget=1, random_state=0)
    with pytest.raises(SelectionError, match="random_state"):
        call(features, labeled_mask=ok, budget=1, random_state=-1)


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
    assert set(STRATEGIES) == {
        "k_center",
        "random",
        "confidence",
        "margin",
        "entropy",
        "hybrid",
        "typical",
    }
    known = "confidence, entropy, hybrid, k_center, margin, random, typical"
    with pytest.raises(ValueError, match=known):
        select("uncertainty", features, labeled_mask=labeled, budget=2, random_state=0)


# --- Uncertainty strategies -------------------------------------------------------------


def reference_score(row: list[float], strategy: str) -> float:
    """Brute-force score of one probability row, straight from the documented definitions.

    Rows are top-k truncations: the missing mass ``1 - sum`` belongs to unseen classes,
    each at most the smallest listed value.
    """
    missing = max(0.0, 1.0 - sum(row))
    ranked = sorted(row, reverse=True)
    if strategy == "confidence":
        return ranked[0]
    if strategy == "margin":
        runner_up = ranked[1] if len(ranked) > 1 else min(missing, ranked[0])
        return ranked[0] - runner_up
    assert strategy == "entropy"
    return -sum(p * math.log(p) for p in [*row, missing] if p > 0)


def reference_uncertainty(
    probs: np.ndarray, allowed: np.ndarray, budget: int, strategy: str
) -> tuple[list[int], list[float]]:
    """Score every allowed row, sort most uncertain first, lowest index on ties."""
    scores = {
        int(i): reference_score([float(p) for p in probs[i]], strategy)
        for i in np.flatnonzero(allowed)
    }
    sign = -1.0 if strategy == "entropy" else 1.0
    order = sorted(scores, key=lambda i: (sign * scores[i], i))[:budget]
    return order, [scores[i] for i in order]


def random_probabilities(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, C) float32 probabilities: some rows complete, some top-k truncated, some tied.

    A truncated row keeps the C largest of a longer softmax, in shuffled column order.
    """
    n_classes = int(rng.integers(1, 5))
    rows = []
    for _ in range(n):
        hidden = int(rng.choice([0, 0, 1, 3])) if n_classes > 1 else int(rng.integers(0, 3))
        full = rng.dirichlet(np.full(n_classes + hidden, 0.7))
        kept = np.sort(full)[::-1][:n_classes]
        rows.append(rng.permutation(kept))
    probs = np.asarray(rows, dtype=np.float32)
    # Exact duplicates give exactly equal scores: the tie-break must pick the lower index.
    for _ in range(n // 3):
        src, dst = rng.integers(0, n, size=2)
        probs[dst] = probs[src]
    return probs


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("strategy", sorted(UNCERTAINTY))
def test_uncertainty_matches_brute_force(seed: int, strategy: str) -> None:
    features, labeled, candidates = random_problem(seed)
    probs = random_probabilities(np.random.default_rng(1000 + seed), len(features))
    func = UNCERTAINTY[strategy]
    for use_candidates in (False, True):
        allowed = (candidates if use_candidates else np.ones_like(labeled)) & ~labeled
        for budget in (1, 2, 3, len(features) + 5):
            got = func(
                features,
                labeled_mask=labeled,
                budget=budget,
                random_state=seed,
                candidate_mask=candidates if use_candidates else None,
                probabilities=probs,
            )
            want, want_scores = reference_uncertainty(probs, allowed, budget, strategy)
            assert got.indices.tolist() == want
            np.testing.assert_allclose(got.distances, want_scores, rtol=1e-5, atol=1e-6)
            assert got.indices.dtype == np.int64 and got.distances.dtype == np.float32
            assert got.strategy == strategy and got.random_state == seed


def test_uncertainty_hand_made_orders() -> None:
    probs = np.array(
        [
            [0.90, 0.05, 0.05],  # confident
            [0.40, 0.35, 0.25],  # small margin, high entropy
            [0.50, 0.50, 0.00],  # zero margin, but lower entropy than row 3
            [0.34, 0.33, 0.33],  # least confident, highest entropy
            [0.60, 0.20, 0.20],
        ],
        dtype=np.float32,
    )
    features = np.zeros((5, 1), dtype=np.float32)
    none = np.zeros(5, dtype=bool)

    def order(func: Callable[..., Selection]) -> list[int]:
        got = func(features, labeled_mask=none, budget=5, random_state=0, probabilities=probs)
        return list(got.indices.tolist())

    assert order(confidence_selection) == [3, 1, 2, 4, 0]
    assert order(margin_selection) == [2, 3, 1, 4, 0]
    assert order(entropy_selection) == [3, 1, 4, 2, 0]
    got = margin_selection(
        features, labeled_mask=none, budget=2, random_state=0, probabilities=probs
    )
    np.testing.assert_allclose(got.distances, [0.0, 0.01], atol=1e-6)


def test_uncertainty_truncated_rows() -> None:
    features = np.zeros((4, 1), dtype=np.float32)
    none = np.zeros(4, dtype=bool)
    # Top-2 rows: row 0 is complete; rows 1-3 leave mass to unseen classes.
    top2 = np.array([[0.5, 0.5], [0.5, 0.3], [0.3, 0.25], [0.45, 0.45]], dtype=np.float32)
    ent = entropy_selection(
        features, labeled_mask=none, budget=4, random_state=0, probabilities=top2
    )
    # The missing mass is one extra "other" bucket: row 2 is (0.3, 0.25, 0.45).
    want = {
        i: -sum(p * math.log(p) for p in r)
        for i, r in enumerate([(0.5, 0.5), (0.5, 0.3, 0.2), (0.3, 0.25, 0.45), (0.45, 0.45, 0.1)])
    }
    assert ent.indices.tolist() == sorted(want, key=lambda i: -want[i]) == [2, 1, 3, 0]
    np.testing.assert_allclose(ent.distances, [want[i] for i in ent.indices], rtol=1e-5)
    conf = confidence_selection(
        features, labeled_mask=none, budget=4, random_state=0, probabilities=top2
    )
    assert conf.indices.tolist() == [2, 3, 0, 1]  # ties (0.5) by lowest index
    # Top-1 rows: the runner-up is unknown, taken as min(missing mass, p1).
    top1 = np.array([[0.9], [0.6], [0.3], [1.0]], dtype=np.float32)
    mar = margin_selection(
        features, labeled_mask=none, budget=4, random_state=0, probabilities=top1
    )
    assert mar.indices.tolist() == [2, 1, 0, 3]
    np.testing.assert_allclose(mar.distances, [0.0, 0.2, 0.8, 1.0], atol=1e-6)


@pytest.mark.parametrize("func", [*UNCERTAINTY.values(), hybrid_selection])
def test_uncertainty_excludes_labelled_and_non_candidates(
    func: Callable[..., Selection],
) -> None:
    rng = np.random.default_rng(4)
    n = 60
    features = rng.normal(size=(n, 3)).astype(np.float32)
    # The most uncertain rows are labelled or excluded: they must still never be picked.
    probs = np.tile(np.array([[0.9, 0.1]], dtype=np.float32), (n, 1))
    probs[:20] = 0.5
    labeled = np.zeros(n, dtype=bool)
    labeled[:10] = True
    cand = np.ones(n, dtype=bool)
    cand[10:20] = False
    cand[50:] = False
    allowed = set(np.flatnonzero(cand & ~labeled).tolist())
    got = func(
        features,
        labeled_mask=labeled,
        budget=5,
        random_state=0,
        candidate_mask=cand,
        probabilities=probs,
    )
    assert len(got.indices) == 5 and set(got.indices.tolist()) <= allowed
    everything = func(
        features,
        labeled_mask=labeled,
        budget=1000,
        random_state=0,
        candidate_mask=cand,
        probabilities=probs,
    )
    assert sorted(everything.indices.tolist()) == sorted(allowed)
    empty = func(
        features,
        labeled_mask=np.ones(n, dtype=bool),
        budget=3,
        random_state=0,
        probabilities=probs,
    )
    assert empty.indices.shape == (0,) and empty.distances.shape == (0,)


@pytest.mark.parametrize("func", [*UNCERTAINTY.values(), hybrid_selection])
def test_uncertainty_deterministic(func: Callable[..., Selection]) -> None:
    rng = np.random.default_rng(8)
    features = rng.normal(size=(100, 4)).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=100).astype(np.float32)
    labeled = rng.random(100) < 0.2
    runs = [
        func(features, labeled_mask=labeled, budget=10, random_state=s, probabilities=probs)
        for s in (3, 3, 4)
    ]
    for run in runs[1:]:
        np.testing.assert_array_equal(run.indices, runs[0].indices)
        np.testing.assert_array_equal(run.distances, runs[0].distances)
    # With labelled rows nothing is random: the seed is only recorded.
    assert [r.random_state for r in runs] == [3, 3, 4]


@pytest.mark.parametrize("func", [*UNCERTAINTY.values(), hybrid_selection])
def test_uncertainty_rejects_bad_probabilities(func: Callable[..., Selection]) -> None:
    features = np.zeros((4, 2), dtype=np.float32)
    ok = np.zeros(4, dtype=bool)

    def call(probs: object) -> Selection:
        return func(features, labeled_mask=ok, budget=1, random_state=0, probabilities=probs)

    with pytest.raises(SelectionError, match="needs probabilities"):
        func(features, labeled_mask=ok, budget=1, random_state=0)
    with pytest.raises(SelectionError, match=r"shape \(4, C\)"):
        call(np.full((5, 2), 0.5, dtype=np.float32))
    with pytest.raises(SelectionError, match=r"shape \(4, C\)"):
        call(np.full(4, 0.5, dtype=np.float32))
    with pytest.raises(SelectionError, match=r"shape \(4, C\)"):
        call(np.zeros((4, 0), dtype=np.float32))
    with pytest.raises(SelectionError, match="real numbers"):
        call(np.full((4, 2), "a"))
    with pytest.raises(SelectionError, match="NaN"):
        call(np.array([[0.5, np.nan]] * 4, dtype=np.float32))
    with pytest.raises(SelectionError, match=">= 0"):
        call(np.array([[1.2, -0.2]] * 4, dtype=np.float32))
    with pytest.raises(SelectionError, match="sum to at most 1"):
        call(np.array([[0.7, 0.7]] * 4, dtype=np.float32))
    # float32 softmax rounding slightly above 1 is fine.
    call(np.array([[0.5000001, 0.5000001]] * 4, dtype=np.float32))


def test_k_center_and_random_ignore_probabilities() -> None:
    features, labeled, _ = random_problem(5)
    bogus = np.full((3, 3), np.nan)  # ignored, so not even validated
    for func in (k_center_greedy, random_selection):
        a = func(features, labeled_mask=labeled, budget=3, random_state=1)
        b = func(features, labeled_mask=labeled, budget=3, random_state=1, probabilities=bogus)
        np.testing.assert_array_equal(a.indices, b.indices)


# --- Hybrid ------------------------------------------------------------------------------


def least_confident_pool(probs: np.ndarray, allowed: np.ndarray, size: int) -> np.ndarray:
    """Brute-force pool: the ``size`` allowed rows with lowest max probability, as a mask."""
    rows = sorted(np.flatnonzero(allowed).tolist(), key=lambda i: (float(probs[i].max()), i))
    mask = np.zeros(len(probs), dtype=bool)
    mask[rows[:size]] = True
    return mask


@pytest.mark.parametrize("seed", range(30))
def test_hybrid_is_k_center_on_uncertain_pool(seed: int) -> None:
    features, labeled, candidates = random_problem(seed)
    probs = random_probabilities(np.random.default_rng(2000 + seed), len(features))
    allowed = candidates & ~labeled
    for budget, pool_factor in ((1, 1), (1, 3), (2, 2), (3, 1), (len(features), 10)):
        got = hybrid_selection(
            features,
            labeled_mask=labeled,
            budget=budget,
            random_state=seed,
            candidate_mask=candidates,
            probabilities=probs,
            pool_factor=pool_factor,
        )
        pool = least_confident_pool(probs, allowed, pool_factor * budget)
        assert set(got.indices.tolist()) <= set(np.flatnonzero(pool).tolist())
        assert len(got.indices) == min(budget, int(allowed.sum()))
        want = k_center_greedy(
            features, labeled_mask=labeled, budget=budget, random_state=seed, candidate_mask=pool
        )
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.distances, want.distances)
        first = None
        if not labeled.any() and pool.any():
            first = int(np.random.default_rng(seed).choice(np.flatnonzero(pool)))
        ref, ref_d = reference_k_center(features, labeled, pool, budget, first)
        assert got.indices.tolist() == ref
        np.testing.assert_allclose(got.distances, ref_d, rtol=1e-4, atol=1e-4)
        assert got.strategy == "hybrid" and got.random_state == seed


def test_hybrid_pool_extremes() -> None:
    rng = np.random.default_rng(6)
    features = rng.normal(size=(40, 3)).astype(np.float32)
    probs = rng.dirichlet(np.ones(4), size=40).astype(np.float32)
    labeled = np.zeros(40, dtype=bool)
    labeled[:3] = True
    kwargs: dict[str, Any] = {
        "labeled_mask": labeled,
        "budget": 5,
        "random_state": 0,
        "probabilities": probs,
    }
    # pool_factor 1: exactly the least confident rows, in k-Center order.
    narrow = hybrid_selection(features, pool_factor=1, **kwargs)
    conf = confidence_selection(features, **kwargs)
    assert set(narrow.indices.tolist()) == set(conf.indices.tolist())
    # A pool covering every candidate: plain k-Center.
    wide = hybrid_selection(features, pool_factor=100, **kwargs)
    plain = k_center_greedy(features, labeled_mask=labeled, budget=5, random_state=0)
    np.testing.assert_array_equal(wide.indices, plain.indices)
    with pytest.raises(SelectionError, match="pool_factor"):
        hybrid_selection(features, pool_factor=0, **kwargs)


def test_select_forwards_probabilities() -> None:
    rng = np.random.default_rng(9)
    features = rng.normal(size=(30, 3)).astype(np.float32)
    probs = rng.dirichlet(np.ones(3), size=30).astype(np.float32)
    labeled = np.zeros(30, dtype=bool)
    labeled[0] = True
    for name, func in STRATEGIES.items():
        got = select(
            name, features, labeled_mask=labeled, budget=4, random_state=2, probabilities=probs
        )
        want = func(features, labeled_mask=labeled, budget=4, random_state=2, probabilities=probs)
        assert got.strategy == name
        np.testing.assert_array_equal(got.indices, want.indices)
    for name in ("confidence", "margin", "entropy", "hybrid"):
        with pytest.raises(SelectionError, match="needs probabilities"):
            select(name, features, labeled_mask=labeled, budget=4, random_state=2)


@pytest.mark.parametrize("seed", range(20))
def test_min_sq_cache_matches_brute_force(seed: int) -> None:
    features, labeled, _ = random_problem(seed)
    rows = np.flatnonzero(labeled)
    first, rest = rows[: rows.size // 2], rows[rows.size // 2 :]
    cache = min_sq_distances_update(features, min_sq=None, new_rows=first, chunk_size=2)
    cache = min_sq_distances_update(features, min_sq=cache, new_rows=rest, chunk_size=3)
    diff = features[:, None, :].astype(np.float64) - features[None, rows, :]
    want = (diff**2).sum(-1).min(axis=1) if rows.size else np.full(len(features), np.inf)
    np.testing.assert_allclose(cache, want, rtol=1e-4, atol=1e-5)
    assert cache.dtype == np.float32


@pytest.mark.parametrize("seed", range(20))
def test_k_center_with_cache_picks_the_same(seed: int) -> None:
    features, labeled, candidates = random_problem(seed + 100)
    cache = min_sq_distances_update(features, min_sq=None, new_rows=np.flatnonzero(labeled))
    for strategy in ("k_center", "hybrid"):
        kwargs: dict[str, Any] = dict(
            labeled_mask=labeled, budget=4, random_state=seed, candidate_mask=candidates
        )
        if strategy == "hybrid":
            kwargs["probabilities"] = np.full((len(features), 2), 0.5, dtype=np.float32)
        plain = select(strategy, features, **kwargs)
        cached = select(strategy, features, min_sq_distances=cache, **kwargs)
        assert plain.indices.tolist() == cached.indices.tolist()
        np.testing.assert_allclose(plain.distances, cached.distances, rtol=1e-4, atol=1e-5)


def test_min_sq_cache_rejects_bad_input() -> None:
    features = np.eye(3, dtype=np.float32)
    with pytest.raises(SelectionError, match="shape"):
        min_sq_distances_update(features, min_sq=np.zeros(2, np.float32), new_rows=np.array([0]))
    with pytest.raises(SelectionError, match="float32"):
        min_sq_distances_update(features, min_sq=np.zeros(3), new_rows=np.array([0]))
    with pytest.raises(SelectionError, match="must lie in"):
        min_sq_distances_update(features, min_sq=None, new_rows=np.array([3]))
    with pytest.raises(SelectionError, match="integer"):
        min_sq_distances_update(features, min_sq=None, new_rows=np.array([0.5]))
    empty = min_sq_distances_update(features, min_sq=None, new_rows=np.array([], dtype=np.int64))
    assert np.isinf(empty).all()


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("block_bytes", [4, 12, 1 << 20])
def test_k_center_streams_a_memory_map_like_brute_force(
    seed: int, block_bytes: int, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: the picks over a memory-mapped .npy, streamed in blocks of one row, a few
    rows or all rows, are brute force's, and the features are never copied into memory."""
    import activelearn.selection_stream as stream

    monkeypatch.setattr(stream, "STREAM_BLOCK_BYTES", block_bytes)
    features, labeled, candidates = random_problem(seed + 200)
    path = tmp_path / "features.npy"
    np.save(path, features)
    mapped = np.load(path, mmap_mode="r")
    assert stream.as_float32_features(mapped, check_finite=True) is mapped
    cache = min_sq_distances_update(mapped, min_sq=None, new_rows=np.flatnonzero(labeled))
    for min_sq in (None, cache):
        got = k_center_greedy(
            mapped,
            labeled_mask=labeled,
            budget=5,
            random_state=seed,
            candidate_mask=candidates,
            min_sq_distances=min_sq if labeled.any() else None,
        )
        allowed = candidates & ~labeled
        first = None
        if not labeled.any() and allowed.any():
            first = int(np.random.default_rng(seed).choice(np.flatnonzero(allowed)))
        want, want_d = reference_k_center(features, labeled, candidates, 5, first)
        assert got.indices.tolist() == want
        np.testing.assert_allclose(got.distances, want_d, rtol=1e-4, atol=1e-4)


def test_streamed_norms_reject_non_finite_rows() -> None:
    features = np.ones((5, 3), dtype=np.float32)
    features[4, 2] = np.inf
    with pytest.raises(SelectionError, match="NaN or infinite"):
        k_center_greedy(features, labeled_mask=np.zeros(5, bool), budget=1, random_state=0)
    with pytest.raises(SelectionError, match="NaN or infinite"):
        min_sq_distances_update(features, min_sq=None, new_rows=np.array([0]))


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("held_rows", [1, 2, 3])
def test_k_center_with_few_rows_held_matches_brute_force(
    seed: int, held_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 19: with only a row or a few held in memory between passes, the picks and their
    distances are still brute force's (held picks, folded passes and plain passes mixed)."""
    import activelearn.selection_stream as stream

    features, labeled, candidates = random_problem(seed + 300)
    monkeypatch.setattr(stream, "HELD_BYTES", 4 * features.shape[1] * held_rows)
    monkeypatch.setattr(stream, "HELD_WAIT_MAX", 2)
    allowed = candidates & ~labeled
    first = None
    if not labeled.any() and allowed.any():
        first = int(np.random.default_rng(seed).choice(np.flatnonzero(allowed)))
    budget = len(features)
    got = k_center_greedy(
        features, labeled_mask=labeled, budget=budget, random_state=seed, candidate_mask=candidates
    )
    want, want_d = reference_k_center(features, labeled, candidates, budget, first)
    assert got.indices.tolist() == want
    np.testing.assert_allclose(got.distances, want_d, rtol=1e-4, atol=1e-4)


def test_k_center_ties_with_rows_held() -> None:
    """Equal distances at the top (nothing to hold apart) still go to the lowest row."""
    import activelearn.selection_stream as stream

    features = np.repeat(np.eye(3, dtype=np.float32), 4, axis=0)  # 3 points, 4 copies each
    labeled = np.zeros(12, dtype=bool)
    labeled[0] = True
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(stream, "HELD_BYTES", 4 * 3 * 2)
        got = k_center_greedy(features, labeled_mask=labeled, budget=11, random_state=0)
    assert got.indices.tolist() == [4, 8, 1, 2, 3, 5, 6, 7, 9, 10, 11]
    np.testing.assert_allclose(got.distances[:2], [np.sqrt(2)] * 2, rtol=1e-6)
    np.testing.assert_array_equal(got.distances[2:], np.zeros(9, dtype=np.float32))


def test_k_center_reads_clustered_data_less_than_once_per_pick(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 19: on clustered data most picks come from the rows held in memory, so a round
    of 40 picks reads the whole array a handful of times, not once per pick."""
    import activelearn.selection_stream as stream

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(200, 16)).astype(np.float32)
    features = (centres[rng.integers(0, 200, 4000)] + 0.1 * rng.normal(size=(4000, 16))).astype(
        np.float32
    )
    labeled = np.zeros(4000, dtype=bool)
    labeled[:50] = True
    reads: list[int] = []
    update, fold = stream.update_min_sq, stream.fold_centres

    def counted_update(min_sq: np.ndarray, feats: np.ndarray, *a: Any, **k: Any) -> None:
        reads.extend([1] if feats is features else [])
        update(min_sq, feats, *a, **k)

    def counted_fold(min_sq: np.ndarray, feats: np.ndarray, **k: Any) -> None:
        reads.extend([1] if feats is features else [])
        fold(min_sq, feats, **k)

    monkeypatch.setattr(stream, "update_min_sq", counted_update)
    monkeypatch.setattr(stream, "fold_centres", counted_fold)
    # One row held: each pick is a read of the data (the tests above check these picks).
    monkeypatch.setattr(stream, "HELD_BYTES", 4 * 16)
    one = k_center_greedy(features, labeled_mask=labeled, budget=40, random_state=0)
    assert len(reads) >= 39
    reads.clear()
    monkeypatch.setattr(stream, "HELD_BYTES", 4 * 16 * 400)  # a tenth of the rows
    got = k_center_greedy(features, labeled_mask=labeled, budget=40, random_state=0)
    np.testing.assert_array_equal(got.indices, one.indices)
    np.testing.assert_allclose(got.distances, one.distances, rtol=1e-5)
    assert len(reads) <= 10, reads
