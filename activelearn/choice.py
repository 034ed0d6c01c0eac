"""Which classifier a retrain keeps, and its calibration, by grouped cross-validation.
Django-free: the retrain and ``benchmarks/learning_core.py`` call the same function.

Every candidate (a ``classifier_train`` backend) is cross-validated on the labelled rows with
folds grouped by capture event; its held-out probabilities get a temperature
(``linear.temperature_fit``) and are pooled over each event as stored predictions are
(``events.event_probabilities_combine``). The candidate whose pooled held-out predictions are
right more often is kept (ties to the earlier candidate).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from activelearn.classifier import TrainedClassifier, ensemble_predict_proba, ensemble_train
from activelearn.evaluation import CrossValidated, cross_validated_probabilities
from activelearn.events import event_probabilities_combine
from activelearn.linear import temper, temperature_fit

# The classifiers every retrain compares (``classifier_train`` backends), preferred first on a
# tie: class-balanced logistic regression, and the paper's MLP with the project's class balance
# and ensemble size.
CANDIDATES = ("logistic", "torch")


@dataclass(frozen=True)
class ClassifierChoice:
    """The kept ``backend``, its ``temperature``, its held-out predictions ``cv`` (tempered and
    event-pooled: ``probabilities``, ``predicted``, ``confidence`` and ``correct`` are the pooled
    ones), and ``scores``: per candidate its pooled and crop-only held-out top-1 and temperature,
    and ``"chosen"``."""

    backend: str
    temperature: float
    cv: CrossValidated
    scores: dict[str, Any]


def classifier_choose(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    groups: np.ndarray,
    random_state: int,
    candidates: Sequence[str],
    class_balance: str = "none",
    ensemble_size: int = 1,
    n_splits: int = 5,
    on_fold: Callable[[str], None] | None = None,
) -> ClassifierChoice:
    """Cross-validate each of ``candidates`` on features (L, d), labels (L,), groups (L,) (the
    capture events) and keep the best; ``on_fold(backend)`` is called before every fold's fit.

    Raises ``evaluation.EvaluationError`` when the labels cannot be cross-validated (fewer than
    two events or classes, see ``cross_validated_probabilities``).
    """
    if not candidates:
        raise ValueError("no candidate classifier to choose from")
    y = np.asarray(labels)
    runs: dict[str, tuple[CrossValidated, float, np.ndarray]] = {}
    scores: dict[str, Any] = {}
    for backend in candidates:

        def train(
            x: np.ndarray, target: np.ndarray, seed: int, backend: str = backend
        ) -> list[TrainedClassifier]:
            if on_fold is not None:
                on_fold(backend)
            return ensemble_train(
                x,
                target,
                random_state=seed,
                class_balance=class_balance,
                size=ensemble_size,
                backend=backend,
            )

        cv = cross_validated_probabilities(
            features,
            y,
            groups=groups,
            train=train,
            predict_proba=ensemble_predict_proba,
            n_splits=n_splits,
            random_state=random_state,
        )
        temperature = temperature_fit(cv.probabilities, np.searchsorted(cv.classes, y))
        pooled = event_probabilities_combine(temper(cv.probabilities, temperature), groups)
        hits = cv.classes[pooled.probabilities.argmax(axis=1)] == y
        runs[backend] = (cv, temperature, pooled.probabilities)
        scores[backend] = {
            "cv_top1_event_combined": float(hits.mean()),
            "cv_top1_crop": float(cv.accuracy),
            "temperature": temperature,
        }
    best = max(
        candidates,
        key=lambda b: (scores[b]["cv_top1_event_combined"], -list(candidates).index(b)),
    )
    scores["chosen"] = best
    cv, temperature, probabilities = runs[best]
    predicted = cv.classes[probabilities.argmax(axis=1)]
    kept = dataclasses.replace(
        cv,
        probabilities=probabilities,
        predicted=predicted,
        confidence=probabilities.max(axis=1),
        correct=predicted == y,
    )
    return ClassifierChoice(best, temperature, kept, scores)
