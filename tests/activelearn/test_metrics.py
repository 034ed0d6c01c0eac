"""activelearn.metrics against scikit-learn (and brute force where it has no such metric)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    confusion_matrix,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    top_k_accuracy_score,
)

from activelearn.metrics import MetricsError, classification_metrics, multilabel_metrics


def _random_case(
    seed: int, n: int = 40, n_classes: int = 7
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = np.sort(rng.choice(np.arange(10, 100), size=n_classes, replace=False))
    logits = rng.normal(size=(n, n_classes)) * 2
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    truth = classes[rng.integers(0, n_classes - 1, size=n)]  # the last class never occurs
    return probs, truth, classes


@pytest.mark.parametrize("seed", range(5))
def test_every_metric_matches_scikit_learn(seed: int) -> None:
    probs, truth, classes = _random_case(seed)
    predicted = classes[probs.argmax(axis=1)]

    m = classification_metrics(probs, truth, classes=classes)

    assert m.n == truth.size
    assert m.top1 == pytest.approx(accuracy_score(truth, predicted))
    assert m.top5 == pytest.approx(top_k_accuracy_score(truth, probs, k=5, labels=classes))
    for average in ("micro", "macro", "weighted"):
        expected = f1_score(truth, predicted, average=average, zero_division=0)
        assert getattr(m, f"f1_{average}") == pytest.approx(expected)
    assert m.log_loss == pytest.approx(log_loss(truth, probs, labels=classes))
    np.testing.assert_array_equal(m.confusion, confusion_matrix(truth, predicted, labels=classes))
    recall = recall_score(truth, predicted, labels=classes, average=None, zero_division=0)
    np.testing.assert_allclose(m.per_class_accuracy[:-1], recall[:-1])
    assert np.isnan(m.per_class_accuracy[-1])  # a species with no true crop has no accuracy
    assert m.per_class()[int(classes[-1])] == (None, 0)
    assert m.per_class_support.sum() == truth.size


def test_unsorted_classes_and_ties_go_to_the_smaller_label() -> None:
    classes = np.array([3, 1, 2])
    probs = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    m = classification_metrics(probs, np.array([1, 2]), classes=classes)
    assert m.top1 == 1.0  # the tie in row 0 goes to class 1, not 3
    assert m.top5 == 1.0  # three classes: top-5 is every class
    assert m.classes.tolist() == [1, 2, 3]
    assert m.confusion.tolist() == [[1, 0, 0], [0, 1, 0], [0, 0, 0]]


def test_top5_of_many_unsorted_classes_by_brute_force() -> None:
    rng = np.random.default_rng(3)
    classes = rng.permutation(np.arange(100, 109))
    probs = rng.random((30, classes.size))
    probs /= probs.sum(axis=1, keepdims=True)
    truth = classes[rng.integers(0, classes.size, size=30)]
    m = classification_metrics(probs, truth, classes=classes)
    top5 = classes[np.argsort(-probs, axis=1)[:, :5]]
    assert m.top5 == pytest.approx(np.mean((top5 == truth[:, None]).any(axis=1)))


def test_two_classes_work() -> None:
    classes = np.array([0, 1])
    probs = np.array([[0.9, 0.1], [0.4, 0.6], [0.7, 0.3]])
    truth = np.array([0, 1, 1])
    m = classification_metrics(probs, truth, classes=classes)
    assert m.top1 == pytest.approx(2 / 3)
    assert m.top5 == 1.0
    assert m.log_loss == pytest.approx(log_loss(truth, probs, labels=classes))


@pytest.mark.parametrize("seed", range(5))
def test_event_accuracy_by_brute_force(seed: int) -> None:
    probs, truth, classes = _random_case(seed, n=30, n_classes=4)
    events = np.random.default_rng(seed).integers(0, 8, size=truth.size).astype(str)

    m = classification_metrics(probs, truth, classes=classes, events=events)

    hits = []
    for event in np.unique(events):
        rows = events == event
        predicted = classes[int(np.argmax(probs[rows].mean(axis=0)))]
        values, counts = np.unique(truth[rows], return_counts=True)
        majority = values[np.argmax(counts)]  # np.unique sorts: ties go to the smaller label
        hits.append(predicted == majority)
    assert m.n_events == len(hits)
    assert m.event_top1 == pytest.approx(np.mean(hits))


def test_bad_input_is_refused_with_a_reason() -> None:
    classes = np.array([1, 2])
    with pytest.raises(MetricsError, match=r"\(N, C\)"):
        classification_metrics(np.ones((3, 3)) / 3, np.array([1, 2, 1]), classes=classes)
    with pytest.raises(MetricsError, match="not among the classes"):
        classification_metrics(np.ones((2, 2)) / 2, np.array([1, 5]), classes=classes)
    with pytest.raises(MetricsError, match="no labels"):
        classification_metrics(np.ones((0, 2)), np.array([], dtype=int), classes=classes)
    with pytest.raises(MetricsError, match="one entry per label"):
        classification_metrics(
            np.ones((2, 2)) / 2, np.array([1, 2]), classes=classes, events=np.array(["a"])
        )


@pytest.mark.parametrize("seed", range(5))
def test_multilabel_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    probs = rng.random((25, 6))
    truth = rng.random((25, 6)) < 0.3
    predicted = probs > 0.5
    names = ["standing", "resting", "moving", "eating", "interacting", "young present"]

    m = multilabel_metrics(probs, truth, names=names)

    assert m.exact_match == pytest.approx(accuracy_score(truth, predicted))
    assert m.accuracy == pytest.approx(np.mean(truth == predicted))
    assert m.precision == pytest.approx(
        precision_score(truth, predicted, average="micro", zero_division=0)
    )
    assert m.recall == pytest.approx(
        recall_score(truth, predicted, average="micro", zero_division=0)
    )
    for a in range(6):
        assert truth[:, a].any() and predicted[:, a].any()  # every score has evidence here
        assert m.per_attribute_accuracy[a] == pytest.approx(np.mean(truth[:, a] == predicted[:, a]))
        assert m.per_attribute_precision[a] == pytest.approx(
            precision_score(truth[:, a], predicted[:, a], zero_division=0)
        )
        assert m.per_attribute_recall[a] == pytest.approx(
            recall_score(truth[:, a], predicted[:, a], zero_division=0)
        )
    assert m.per_attribute_support.tolist() == truth.sum(axis=0).tolist()


def test_no_recorded_attribute_is_no_evidence_not_a_perfect_score() -> None:
    """Issue 17: with no attribute ever recorded as yes the all-no answer used to show
    accuracy 1.000 with precision and recall 0; each is now None (no evidence)."""
    probs = np.full((4, 2), 0.1)  # the head says no everywhere
    m = multilabel_metrics(probs, np.zeros((4, 2), dtype=bool), names=["eating", "young"])
    assert not m.evidence
    assert (m.exact_match, m.accuracy, m.precision, m.recall) == (None, None, None, None)
    assert np.isnan(m.per_attribute_accuracy).all() and np.isnan(m.per_attribute_recall).all()
    assert np.isnan(m.per_attribute_precision).all()
    assert m.summary() == {
        "n": 4, "exact_match": None, "accuracy": None, "precision": None, "recall": None
    }  # fmt: skip


def test_each_score_is_none_exactly_where_it_has_no_evidence() -> None:
    """Brute force on a tiny case: attribute 0 recorded and predicted, attribute 1 recorded
    never but predicted once, attribute 2 never either way."""
    truth = np.array([[True, False, False], [False, False, False], [True, False, False]])
    probs = np.array([[0.9, 0.2, 0.1], [0.8, 0.7, 0.1], [0.3, 0.1, 0.1]])
    m = multilabel_metrics(probs, truth, names=["a", "b", "c"])
    assert m.evidence
    # Pairs: 9, right 6 (a: row 0; b: rows 0 and 2; c: all three).
    assert m.accuracy == pytest.approx(6 / 9) and m.exact_match == pytest.approx(1 / 3)
    assert m.precision == pytest.approx(1 / 3) and m.recall == pytest.approx(1 / 2)
    assert m.per_attribute_accuracy[0] == pytest.approx(1 / 3)
    assert np.isnan(m.per_attribute_accuracy[1:]).all()  # no yes recorded: no accuracy claim
    assert m.per_attribute_precision[:2] == pytest.approx([1 / 2, 0.0])
    assert np.isnan(m.per_attribute_precision[2])  # never predicted yes
    assert m.per_attribute_recall[0] == pytest.approx(1 / 2)
    assert np.isnan(m.per_attribute_recall[1:]).all()
    assert m.per_attribute_support.tolist() == [2, 0, 0]


def test_exactly_one_half_is_no() -> None:
    """The paper: a probability *above* 0.5 counts as yes."""
    m = multilabel_metrics(np.array([[0.5]]), np.array([[True]]), names=["moving"])
    assert m.recall == 0.0 and m.accuracy == 0.0


def test_float32_rows_are_rescaled_before_scoring() -> None:
    rng = np.random.default_rng(5)
    probs = rng.random((20, 6)).astype(np.float32)
    probs /= probs.sum(axis=1, keepdims=True)
    truth = rng.integers(0, 6, size=20)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn's "do not sum to one" would raise
        m = classification_metrics(probs, truth, classes=np.arange(6))
    exact = probs.astype(np.float64)
    exact /= exact.sum(axis=1, keepdims=True)
    assert m.log_loss == pytest.approx(log_loss(truth, exact, labels=range(6)))
