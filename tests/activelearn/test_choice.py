"""The retrain's choice of classifier: cross-validated, pooled over events, ties to the first."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.choice import classifier_choose
from activelearn.evaluation import EvaluationError


def _events(n_events: int = 12, per_event: int = 4, seed: int = 0):  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(n_events) % 3, per_event)
    groups = np.repeat([f"e{i}" for i in range(n_events)], per_event)
    x = rng.normal(size=(labels.size, 5)) + 2.0 * np.eye(3, 5)[labels]
    return x.astype(np.float32), labels.astype(np.int64), groups


def test_every_candidate_is_cross_validated_and_the_best_kept() -> None:
    x, y, groups = _events()
    folds: list[str] = []
    choice = classifier_choose(
        x,
        y,
        groups=groups,
        random_state=0,
        candidates=("logistic", "torch"),
        n_splits=3,
        on_fold=folds.append,
    )
    assert folds == ["logistic"] * 3 + ["torch"] * 3
    scores = choice.scores
    assert scores["chosen"] == choice.backend
    best = max(("logistic", "torch"), key=lambda b: scores[b]["cv_top1_event_combined"])
    assert (
        scores[choice.backend]["cv_top1_event_combined"] == scores[best]["cv_top1_event_combined"]
    )
    # The kept held-out predictions are the pooled ones the score was taken on.
    pooled = choice.cv.classes[choice.cv.probabilities.argmax(axis=1)]
    assert (choice.cv.predicted == pooled).all() and (choice.cv.correct == (pooled == y)).all()
    assert choice.cv.correct.mean() == pytest.approx(
        scores[choice.backend]["cv_top1_event_combined"]
    )
    assert choice.temperature > 0


def test_a_tie_goes_to_the_first_candidate() -> None:
    x, y, groups = _events()
    choice = classifier_choose(
        x, y, groups=groups, random_state=0, candidates=("logistic", "logistic"), n_splits=3
    )
    assert choice.backend == "logistic" and set(choice.scores) == {"logistic", "chosen"}


def test_labels_that_cannot_be_cross_validated_are_refused() -> None:
    x, y, _ = _events(n_events=3)
    with pytest.raises(EvaluationError):
        classifier_choose(
            x, y, groups=np.full(y.size, "one"), random_state=0, candidates=("logistic",)
        )
    with pytest.raises(ValueError, match="no candidate"):
        classifier_choose(x, y, groups=np.full(y.size, "one"), random_state=0, candidates=())
