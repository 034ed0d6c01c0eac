"""The empties check's arithmetic (Django-free): stratified sample and the Wilson interval."""

from __future__ import annotations

import math
from collections import Counter
from itertools import combinations_with_replacement

import numpy as np
import pytest

from activelearn.empties import (
    Z_95,
    allocation_proportional,
    missed_rate,
    sample_stratified,
    wilson_interval,
)


def _wilson_brute(k: int, n: int, z: float = Z_95) -> tuple[float, float]:
    """The p on a fine grid that the score test does not reject: |k - np| <= z sqrt(np(1-p))."""
    grid = np.linspace(0.0, 1.0, 200_001)
    inside = np.abs(k - n * grid) <= z * np.sqrt(n * grid * (1 - grid)) + 1e-12
    return float(grid[inside].min()), float(grid[inside].max())


@pytest.mark.parametrize(("k", "n"), [(0, 1), (0, 10), (1, 10), (3, 7), (5, 5), (12, 40), (1, 200)])
def test_wilson_matches_brute_force(k: int, n: int) -> None:
    low, high = wilson_interval(k, n)
    b_low, b_high = _wilson_brute(k, n)
    assert low == pytest.approx(b_low, abs=2e-5) and high == pytest.approx(b_high, abs=2e-5)
    assert low <= k / n <= high


def test_wilson_known_values() -> None:
    # Published: 0 of 10 -> [0, 0.2775]; 5 of 10 -> [0.2366, 0.7634]; 81 of 263 -> [0.2553, 0.3662]
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.27753, abs=1e-5))
    low, high = wilson_interval(5, 10)
    assert (low, high) == (pytest.approx(0.23659, abs=1e-5), pytest.approx(0.76341, abs=1e-5))
    low, high = wilson_interval(81, 263)
    assert (low, high) == (pytest.approx(0.2553, abs=1e-4), pytest.approx(0.3662, abs=1e-4))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_missed_rate_and_accuracy() -> None:
    rate = missed_rate(missed=2, checked=50)
    assert rate.rate == pytest.approx(0.04) and rate.empty_accuracy == pytest.approx(0.96)
    assert (rate.low, rate.high) == wilson_interval(2, 50)
    none = missed_rate(missed=0, checked=0)
    assert none.rate is None and none.empty_accuracy is None


def test_allocation_is_proportional_and_sums() -> None:
    assert allocation_proportional([100, 50, 50], 20) == [10, 5, 5]
    assert allocation_proportional([3, 0, 1], 10) == [3, 0, 1]  # no more than there is
    assert allocation_proportional([90, 9, 1], 10) == [7, 2, 1]  # each camera gets one
    assert allocation_proportional([5, 9, 1], 2) == [1, 1, 0]  # fewer draws than cameras
    assert allocation_proportional([4, 4], 0) == [0, 0]


def test_allocation_against_brute_force() -> None:
    """Over small cases: sums to min(n, total), within each size, every camera once when it
    can, and no stratum is further than one draw from its proportional share of the rest."""
    for sizes in combinations_with_replacement(range(0, 6), 3):
        total = sum(sizes)
        nonempty = sum(1 for s in sizes if s)
        for n in range(0, total + 2):
            out = allocation_proportional(list(sizes), n)
            assert sum(out) == min(n, total)
            assert all(0 <= o <= s for o, s in zip(out, sizes, strict=True))
            if n >= nonempty:
                assert all(o >= 1 for o, s in zip(out, sizes, strict=True) if s)
                rest = min(n, total) - nonempty
                room = [max(s - 1, 0) for s in sizes]
                if sum(room):
                    for o, s, r in zip(out, sizes, room, strict=True):
                        if s:
                            share = rest * r / sum(room)
                            assert math.floor(share) <= o - 1 <= math.ceil(share)


def test_sample_is_stratified_reproducible_and_without_repeats() -> None:
    strata = {"cam-a": list(range(0, 100)), "cam-b": list(range(100, 150)), "cam-c": [150]}
    first = sample_stratified(strata, 15, seed=3)
    assert first == sample_stratified(dict(reversed(strata.items())), 15, seed=3)
    assert len(first) == len(set(first)) == 15
    per = Counter("a" if i < 100 else "b" if i < 150 else "c" for i in first)
    assert per == {"a": 9, "b": 5, "c": 1}
    assert sample_stratified(strata, 15, seed=4) != first
    assert sample_stratified(strata, 1000, seed=3) == list(range(151))  # all of them
