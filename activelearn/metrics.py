"""The metrics camera-trap papers report, computed one way for the whole product.

One function, ``classification_metrics``, scores class probabilities against true labels:
top-1 and top-5 accuracy, F1 (micro, macro, weighted), log loss, per-species accuracy (the
share of each species' crops predicted right, i.e. its recall), the confusion matrix and, given
capture events, event-level accuracy (an event's prediction is the mean of its crops'
probability vectors, Norouzzadeh et al. 2018 S.3; its truth is its most common true label).
``multilabel_metrics`` scores yes/no attributes the way the PNAS paper does (a probability
above 0.5 counts as yes): exact-match and per-attribute accuracy, precision and recall.

The al_benchmark, the learning curve and the admin page all call these. Every number that
scikit-learn defines comes from scikit-learn. Arrays in, frozen dataclasses out; no Django.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    top_k_accuracy_score,
)


class MetricsError(ValueError):
    """The inputs cannot be scored; the message says why."""


@dataclass(frozen=True)
class ClassificationMetrics:
    """Scores of N predictions over C classes (fractions in [0, 1], log loss in nats).

    Attributes:
        classes: (C,) the class labels, the order of every per-class array.
        n: number of scored crops.
        top1, top5: accuracy of the most probable label / of the five most probable.
        f1_micro, f1_macro, f1_weighted: F1 of the top-1 labels; macro over the classes that
            occur in the truth or the predictions, weighted by each class's true count.
        log_loss: mean negative log probability of the true class (probabilities clipped by
            scikit-learn).
        per_class_accuracy: (C,) share of each class's crops predicted right; NaN for a class
            with no true crop.
        per_class_support: (C,) number of true crops of each class.
        confusion: (C, C) counts, rows true, columns predicted.
        event_top1: accuracy of the capture-event predictions, None without events.
        n_events: number of events scored (0 without events).
    """

    classes: np.ndarray
    n: int
    top1: float
    top5: float
    f1_micro: float
    f1_macro: float
    f1_weighted: float
    log_loss: float
    per_class_accuracy: np.ndarray
    per_class_support: np.ndarray
    confusion: np.ndarray
    event_top1: float | None
    n_events: int

    def summary(self) -> dict[str, float | int | None]:
        """The scalar metrics, for JSON and tables."""
        return {
            "n": self.n,
            "top1": self.top1,
            "top5": self.top5,
            "f1_micro": self.f1_micro,
            "f1_macro": self.f1_macro,
            "f1_weighted": self.f1_weighted,
            "log_loss": self.log_loss,
            "event_top1": self.event_top1,
            "n_events": self.n_events,
        }

    def per_class(self) -> dict[int, tuple[float | None, int]]:
        """{class label: (accuracy or None without crops, support)}."""
        return {
            int(label): (None if support == 0 else float(acc), int(support))
            for label, acc, support in zip(
                self.classes.tolist(),
                self.per_class_accuracy.tolist(),
                self.per_class_support.tolist(),
                strict=True,
            )
        }


def classification_metrics(
    probabilities: np.ndarray,
    labels: np.ndarray,
    *,
    classes: np.ndarray,
    events: np.ndarray | None = None,
) -> ClassificationMetrics:
    """Score class probabilities against the truth.

    Args:
        probabilities: (N, C) float, each row a probability vector over ``classes``.
        labels: (N,) true labels, each one of ``classes``.
        classes: (C,) distinct class labels (e.g. species ids), the columns' order.
        events: optional (N,) capture event of each crop, for ``event_top1``.

    Ties in the probabilities go to the smaller label, as everywhere in Trapwise. The result's
    ``classes`` (and every per-class array) are sorted.
    """
    probs, truth, classes = _checked(probabilities, labels, classes)
    predicted = classes[np.argmax(probs, axis=1)]
    confusion = confusion_matrix(truth, predicted, labels=classes)
    support = confusion.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        per_class = np.where(support > 0, np.diag(confusion) / np.maximum(support, 1), np.nan)
    event_top1, n_events = (
        (None, 0) if events is None else _event_accuracy(probs, truth, events, classes)
    )
    return ClassificationMetrics(
        classes=classes,
        n=int(truth.size),
        top1=float(accuracy_score(truth, predicted)),
        # Top-5 of five classes or fewer is every class: 1 by definition.
        top5=1.0
        if classes.size <= 5
        else float(top_k_accuracy_score(truth, probs, k=5, labels=classes)),
        f1_micro=float(f1_score(truth, predicted, average="micro", zero_division=0)),
        f1_macro=float(f1_score(truth, predicted, average="macro", zero_division=0)),
        f1_weighted=float(f1_score(truth, predicted, average="weighted", zero_division=0)),
        log_loss=float(log_loss(truth, probs, labels=classes)) if classes.size > 1 else 0.0,
        per_class_accuracy=per_class.astype(np.float64),
        per_class_support=support.astype(np.int64),
        confusion=confusion.astype(np.int64),
        event_top1=event_top1,
        n_events=n_events,
    )


def _checked(
    probabilities: np.ndarray, labels: np.ndarray, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs = np.asarray(probabilities, dtype=np.float64)
    truth = np.asarray(labels).reshape(-1)
    classes = np.asarray(classes).reshape(-1)
    if probs.ndim != 2 or probs.shape != (truth.size, classes.size):
        raise MetricsError(
            f"probabilities must be (N, C) = ({truth.size}, {classes.size}), got {probs.shape}"
        )
    if truth.size == 0:
        raise MetricsError("nothing to score: no labels")
    if np.unique(classes).size != classes.size:
        raise MetricsError("classes must be distinct")
    unknown = np.setdiff1d(truth, classes)
    if unknown.size:
        raise MetricsError(f"labels not among the classes: {unknown[:10].tolist()}")
    if not np.isfinite(probs).all() or (probs < 0).any():
        raise MetricsError("probabilities must be finite and non-negative")
    # Rows of float32 probabilities sum to 1 only within ~1e-6, which scikit-learn's log loss
    # warns about; rescale every row that has any mass.
    sums = probs.sum(axis=1, keepdims=True)
    probs = np.divide(probs, sums, out=probs.copy(), where=sums > 0)
    # scikit-learn wants the classes sorted; sorting also makes ties go to the smaller label,
    # as in classifier_predict.
    order = np.argsort(classes, kind="stable")
    return probs[:, order], truth, classes[order]


def _event_accuracy(
    probs: np.ndarray, truth: np.ndarray, events: np.ndarray, classes: np.ndarray
) -> tuple[float, int]:
    """(accuracy, number of events): the class of an event's mean probability vector against
    the event's most common true label (ties: the smaller label)."""
    events = np.asarray(events).reshape(-1)
    if events.size != truth.size:
        raise MetricsError(
            f"events must have one entry per label ({truth.size}), got {events.size}"
        )
    _, group = np.unique(events, return_inverse=True)
    group = group.reshape(-1)
    n_events = int(group.max()) + 1
    sums = np.zeros((n_events, classes.size), dtype=np.float64)
    np.add.at(sums, group, probs)  # the mean and the sum peak at the same class
    column = {label: i for i, label in enumerate(classes.tolist())}
    votes = np.zeros((n_events, classes.size), dtype=np.int64)
    np.add.at(votes, (group, np.asarray([column[t] for t in truth.tolist()])), 1)
    hits = np.argmax(sums, axis=1) == np.argmax(votes, axis=1)
    return float(np.mean(hits)), n_events


@dataclass(frozen=True)
class MultilabelMetrics:
    """Scores of yes/no attributes (a probability above ``threshold`` is yes).

    A score without evidence is None (NaN in the per-attribute arrays), never a number: with
    no recorded yes the all-no answer scores accuracy 1.0 and precision and recall have no
    defined value, so showing 1.000 and 0.000 would claim a skill nobody measured.

    Attributes:
        names: (A,) attribute names, the order of every per-attribute array.
        n: number of scored crops.
        exact_match: share of crops whose every attribute is right (scikit-learn's subset
            accuracy); None when no crop has any attribute recorded as yes.
        accuracy: micro-averaged over all (crop, attribute) pairs; None as ``exact_match``.
        precision: micro-averaged; None when nothing was predicted yes.
        recall: micro-averaged; None when no attribute was recorded as yes.
        per_attribute_accuracy, per_attribute_recall: (A,) each; NaN where the attribute has
            no recorded yes.
        per_attribute_precision: (A,); NaN where the attribute was never predicted yes.
        per_attribute_support: (A,) number of true yes per attribute.
    """

    names: tuple[str, ...]
    n: int
    threshold: float
    exact_match: float | None
    accuracy: float | None
    precision: float | None
    recall: float | None
    per_attribute_accuracy: np.ndarray
    per_attribute_precision: np.ndarray
    per_attribute_recall: np.ndarray
    per_attribute_support: np.ndarray

    @property
    def evidence(self) -> bool:
        """Whether any attribute was recorded as yes (else nothing here was measured)."""
        return bool(self.per_attribute_support.sum() > 0)

    def summary(self) -> dict[str, float | int | None]:
        return {
            "n": self.n,
            "exact_match": self.exact_match,
            "accuracy": self.accuracy,
            "precision": self.precision,
            "recall": self.recall,
        }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator elementwise, NaN where the denominator is 0 (no evidence)."""
    num = np.asarray(numerator, dtype=np.float64)
    den = np.asarray(denominator, dtype=np.float64)
    out = np.full(num.shape, np.nan)
    np.divide(num, den, out=out, where=den > 0)
    return out


def score_or_none(value: np.ndarray | float) -> float | None:
    """A score as a float, or None where it is NaN (no evidence)."""
    number = float(value)
    return None if np.isnan(number) else number


def multilabel_metrics(
    probabilities: np.ndarray,
    truth: np.ndarray,
    *,
    names: tuple[str, ...] | list[str],
    threshold: float = 0.5,
) -> MultilabelMetrics:
    """Score attribute probabilities (N, A) against true yes/no values (N, A) of bool."""
    probs = np.asarray(probabilities, dtype=np.float64)
    true = np.asarray(truth).astype(bool)
    if probs.ndim != 2 or probs.shape != true.shape or probs.shape[1] != len(names):
        raise MetricsError(
            f"probabilities and truth must both be (N, {len(names)}), "
            f"got {probs.shape} and {true.shape}"
        )
    if probs.shape[0] == 0:
        raise MetricsError("nothing to score: no crops")
    predicted = probs > threshold
    hits = true & predicted
    support = true.sum(axis=0).astype(np.int64)
    evidence = bool(support.sum() > 0)
    return MultilabelMetrics(
        names=tuple(names),
        n=int(probs.shape[0]),
        threshold=threshold,
        exact_match=float(np.mean(np.all(true == predicted, axis=1))) if evidence else None,
        accuracy=float(np.mean(true == predicted)) if evidence else None,
        precision=score_or_none(_ratio(hits.sum(), predicted.sum())),
        recall=score_or_none(_ratio(hits.sum(), true.sum())),
        per_attribute_accuracy=np.where(
            support > 0, np.mean(true == predicted, axis=0), np.nan
        ).astype(np.float64),
        per_attribute_precision=_ratio(hits.sum(axis=0), predicted.sum(axis=0)),
        per_attribute_recall=_ratio(hits.sum(axis=0), support),
        per_attribute_support=support,
    )
