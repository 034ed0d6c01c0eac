"""Tests for activelearn.selection_rule: the default strategy of a round."""

from __future__ import annotations

import math

import pytest

from activelearn import selection_rule
from activelearn.selection import STRATEGIES
from activelearn.selection_rule import (
    AUDIT_MARGIN_MIN,
    MARGIN_FROM_PER_SPECIES,
    TYPICAL_BELOW_PER_SPECIES,
    StrategyChoice,
    strategy_for_round,
)


def _choose(n_labels: int, **kwargs: object) -> StrategyChoice:
    args: dict[str, object] = {"n_crops": 10_000, "n_species": 20, **kwargs}
    return strategy_for_round(n_labels=n_labels, **args)  # type: ignore[arg-type]


def test_typical_first_then_margin_by_labels_per_species() -> None:
    typical_until = math.ceil(TYPICAL_BELOW_PER_SPECIES * 20)
    margin_from = math.ceil(MARGIN_FROM_PER_SPECIES * 20)
    assert _choose(0).strategy == "typical"
    assert _choose(typical_until - 1).strategy == "typical"
    # Measured: after the typical phase, k-Center for the budgets missouri-dev reaches (up to
    # 15 labels per species); margin only far beyond.
    assert _choose(typical_until).strategy == "k_center"
    assert _choose(15 * 20).strategy == "k_center"
    assert _choose(margin_from - 1).strategy == "k_center"
    assert _choose(max(margin_from, typical_until)).strategy == "margin"
    assert _choose(5000).strategy == "margin"
    # The reason names the numbers the choice was made on.
    assert "0 labels for 20 species" in _choose(0).reason
    assert f"{margin_from} labels" in _choose(margin_from).reason


def test_k_center_between_the_thresholds(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(selection_rule, "TYPICAL_BELOW_PER_SPECIES", 2.0)
    monkeypatch.setattr(selection_rule, "MARGIN_FROM_PER_SPECIES", 5.0)
    assert [_choose(n).strategy for n in (39, 40, 99, 100)] == [
        "typical",
        "k_center",
        "k_center",
        "margin",
    ]


def test_audit_accuracy_gates_the_margins() -> None:
    many = 5000
    low = _choose(many, audit_accuracy=AUDIT_MARGIN_MIN / 2)
    assert low.strategy == "k_center" and "audit accuracy" in low.reason
    high = _choose(many, audit_accuracy=min(1.0, AUDIT_MARGIN_MIN + 0.1))
    assert high.strategy == "margin" and "audit accuracy" in high.reason
    # Audit evidence does not hurry a cold start into margins.
    assert _choose(0, audit_accuracy=1.0).strategy == "typical"


def test_without_a_classifier_margin_is_never_chosen() -> None:
    choice = _choose(5000, has_classifier=False)
    assert choice.strategy == "typical" and "no classifier" in choice.reason


def test_no_species_yet_counts_labels_as_one_species() -> None:
    assert _choose(0, n_species=0).strategy == "typical"
    assert _choose(500, n_species=0).strategy == "margin"


def test_every_choice_is_a_product_strategy() -> None:
    for n in range(0, 400, 7):
        for audit in (None, 0.0, 1.0):
            assert _choose(n, audit_accuracy=audit).strategy in STRATEGIES


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_labels": -1}, "n_labels"),
        ({"n_labels": 11, "n_crops": 10}, "cannot exceed"),
        ({"n_species": -2}, "n_species"),
        ({"audit_accuracy": 1.5}, "audit_accuracy"),
        ({"audit_accuracy": math.nan}, "audit_accuracy"),
        ({"n_labels": 2.5}, "integer"),
    ],
)
def test_bad_input_is_refused(kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"n_labels": 5, "n_crops": 10, "n_species": 3, **kwargs}
    with pytest.raises(ValueError, match=message):
        strategy_for_round(**args)  # type: ignore[arg-type]
