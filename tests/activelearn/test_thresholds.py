"""Per-species thresholds against brute force on tiny random inputs."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.thresholds import species_threshold_one, species_thresholds, thresholds_accept


def _brute(
    conf: np.ndarray, hits: np.ndarray, target: float, min_accepted: int
) -> tuple[float | None, float | None, int]:
    best: tuple[float | None, float | None, int] = (None, None, 0)
    for t in sorted(set(conf.tolist()), reverse=True):
        kept = conf >= t
        accuracy = hits[kept].mean()
        if kept.sum() >= min_accepted and accuracy >= target:
            best = (t, float(accuracy), int(kept.sum()))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_one_species_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 15))
    # Few distinct levels, so that ties are common.
    conf = rng.choice([0.2, 0.5, 0.6, 0.8, 0.9, 0.95], size=n)
    hits = rng.random(n) < conf
    target = float(rng.choice([0.5, 0.75, 0.9, 1.0]))
    min_accepted = int(rng.integers(1, 4))
    got = species_threshold_one(conf, hits, target=target, min_accepted=min_accepted)
    want = _brute(conf, hits, target, min_accepted)
    assert got[0] == want[0] and got[2] == want[2]
    assert (got[1] is None) == (want[1] is None)
    if got[1] is not None:
        assert got[1] == pytest.approx(want[1])


def test_species_thresholds_per_species_and_fallback() -> None:
    rng = np.random.default_rng(3)
    predicted = np.array([1] * 30 + [2] * 25 + [3] * 5)
    conf = rng.random(60)
    correct = np.concatenate([conf[:30] > 0.3, np.zeros(25, bool), np.ones(5, bool)])
    got = species_thresholds(
        predicted=predicted,
        confidence=conf,
        correct=correct,
        target=0.9,
        min_evidence=20,
        min_accepted=10,
    )
    assert set(got) == {1, 2}  # species 3: too little evidence, the global threshold
    want = _brute(conf[:30], correct[:30], 0.9, 10)
    assert got[1].threshold == want[0] and got[1].n == 30
    assert got[2].threshold is None and got[2].n_accepted == 0  # never right: never accepted


def test_species_thresholds_refuse_bad_input() -> None:
    with pytest.raises(ValueError, match="length"):
        species_thresholds(
            predicted=np.array([1]),
            confidence=np.array([0.5, 0.6]),
            correct=np.array([True]),
            target=0.9,
        )
    with pytest.raises(ValueError, match="target"):
        species_thresholds(
            predicted=np.array([1]),
            confidence=np.array([0.5]),
            correct=np.array([True]),
            target=0.0,
        )
    with pytest.raises(ValueError, match="finite"):
        species_thresholds(
            predicted=np.array([1]),
            confidence=np.array([np.nan]),
            correct=np.array([True]),
            target=0.9,
        )


def test_thresholds_accept_matches_a_loop() -> None:
    rng = np.random.default_rng(0)
    species = rng.integers(0, 4, size=50)
    conf = rng.random(50)
    own: dict[int, float | None] = {0: 0.3, 1: None}
    for global_threshold in (0.6, None):
        got = thresholds_accept(
            species=species, confidence=conf, per_species=own, global_threshold=global_threshold
        )
        for s, c, accepted in zip(species, conf, got, strict=True):
            cut = own.get(int(s), global_threshold)
            assert accepted == (cut is not None and c >= cut)
