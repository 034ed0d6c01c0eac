"""The anchoring figures against brute force on tiny random inputs."""

from __future__ import annotations

import itertools
import random

import pytest

from activelearn.anchoring import AnchorRow, anchoring_stats

SPECIES = [1, 2, 3]
ANSWERS = [("species", 1), ("species", 2), ("species", 3), ("not_animal", None), ("unknown", None)]


def _random_rows(rng: random.Random, n: int) -> list[AnchorRow]:
    rows = []
    for _ in range(n):
        suggestions = rng.sample(SPECIES, rng.randint(0, 3))
        answer = rng.choice(ANSWERS)
        reference = rng.choice([None, *ANSWERS])
        rows.append(AnchorRow(suggestions=suggestions, answer=answer, reference=reference))
    return rows


def _wilson_brute(hits: int, n: int) -> tuple[float, float]:
    """The Wilson interval by its definition: the p whose score test does not reject at 5%,
    found on a fine grid (no closed form)."""
    z = 1.959963984540054
    inside = [
        p
        for p in (i / 20000 for i in range(20001))
        if (hits / n - p) ** 2 <= z * z * p * (1 - p) / n
    ]
    return min(inside), max(inside)


@pytest.mark.parametrize("seed", range(30))
def test_counts_match_brute_force(seed: int) -> None:
    rng = random.Random(seed)
    rows = _random_rows(rng, rng.randint(0, 25))
    got = anchoring_stats(rows)
    shown = [r for r in rows if len(r.suggestions) > 0]
    took = 0
    first_hits = first_n = other_hits = other_n = machine_hits = machine_n = 0
    for r in shown:
        first = r.answer == ("species", r.suggestions[0])
        took += first
        if r.reference is None:
            continue
        right = r.answer == r.reference
        if first:
            first_n += 1
            first_hits += right
        else:
            other_n += 1
            other_hits += right
        machine_n += 1
        machine_hits += r.reference == ("species", r.suggestions[0])
    assert got.labels == len(shown)
    assert (got.took_first.hits, got.took_first.n) == (took, len(shown))
    assert (got.first_right.hits, got.first_right.n) == (first_hits, first_n)
    assert (got.other_right.hits, got.other_right.n) == (other_hits, other_n)
    assert (got.machine_right.hits, got.machine_right.n) == (machine_hits, machine_n)
    for share in (got.took_first, got.first_right, got.other_right, got.machine_right):
        if share.n == 0:
            assert share.share is None and (share.low, share.high) == (0.0, 1.0)
        else:
            assert share.share == pytest.approx(share.hits / share.n)
            assert share.share is not None
            assert share.low - 1e-12 <= share.share <= share.high + 1e-12


@pytest.mark.parametrize(("hits", "n"), [(0, 1), (1, 1), (3, 7), (10, 10), (12, 40)])
def test_intervals_are_wilson_by_brute_force(hits: int, n: int) -> None:
    rows = [
        AnchorRow(suggestions=[1], answer=("species", 1 if i < hits else 2), reference=None)
        for i in range(n)
    ]
    share = anchoring_stats(rows).took_first
    low, high = _wilson_brute(hits, n)
    assert share.low == pytest.approx(low, abs=1e-4)
    assert share.high == pytest.approx(high, abs=1e-4)


def test_only_a_species_answer_takes_the_first_suggestion() -> None:
    rows = [
        AnchorRow(suggestions=[2, 1], answer=("species", 2), reference=("species", 2)),
        AnchorRow(suggestions=[2, 1], answer=("species", 1), reference=("species", 2)),
        AnchorRow(suggestions=[2], answer=("unknown", None), reference=("not_animal", None)),
        AnchorRow(suggestions=[], answer=("species", 2), reference=("species", 2)),
    ]
    got = anchoring_stats(rows)
    assert got.labels == 3
    assert (got.took_first.hits, got.took_first.n) == (1, 3)
    assert (got.first_right.hits, got.first_right.n) == (1, 1)
    assert (got.other_right.hits, got.other_right.n) == (0, 2)
    assert (got.machine_right.hits, got.machine_right.n) == (2, 3)


def test_every_combination_of_one_row() -> None:
    for suggestions, answer, reference in itertools.product(
        [[1], [1, 2]], ANSWERS, [None, *ANSWERS]
    ):
        got = anchoring_stats([AnchorRow(suggestions, answer, reference)])
        assert got.took_first.hits == (answer == ("species", 1))
        assert got.machine_right.n == (reference is not None)
