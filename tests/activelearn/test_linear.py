"""The logistic classifier and temperature scaling against scikit-learn and brute force."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from activelearn.classifier import classifier_predict, classifier_probabilities, classifier_train
from activelearn.linear import logistic_fit, temper, temperature_fit


def _blobs(n: int = 90, classes: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % classes
    x = rng.normal(size=(n, 6)) + 2.5 * np.eye(classes, 6)[y]
    return x.astype(np.float32), y.astype(np.int64)


def test_logistic_matches_scikit_learn_on_unit_rows() -> None:
    x, y = _blobs()
    model, converged, n_iter = logistic_fit(x, y)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(unit, y)
    np.testing.assert_allclose(model.predict_proba(x), ref.predict_proba(unit), atol=1e-5)
    assert converged and n_iter > 0


def test_two_classes_give_two_columns() -> None:
    x, y = _blobs(classes=2)
    model, _, _ = logistic_fit(x, y)
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    ref = LogisticRegression(C=1.0, class_weight="balanced", max_iter=2000).fit(unit, y)
    np.testing.assert_allclose(model.predict_proba(x), ref.predict_proba(unit), atol=1e-5)


def test_the_logistic_backend_and_its_temperature() -> None:
    x, y = _blobs()
    clf = classifier_train(x, y + 10, random_state=0, backend="logistic")
    assert clf.algorithm.startswith("logistic regression") and list(clf.classes) == [10, 11, 12]
    probs = classifier_probabilities(clf, x)

    soft = dataclasses.replace(clf, temperature=3.0)
    np.testing.assert_allclose(classifier_probabilities(soft, x), temper(probs, 3.0), atol=1e-5)
    top = classifier_predict(soft, x, top_k=2)
    assert (top.label == clf.classes[probs.argmax(axis=1)]).all()  # order kept


def test_temper_is_a_softmax_of_scaled_log_probabilities() -> None:
    p = np.array([[0.7, 0.2, 0.1]])
    np.testing.assert_allclose(temper(p, 1.0), p, atol=1e-7)
    expected = p**0.5 / (p**0.5).sum()
    np.testing.assert_allclose(temper(p, 2.0), expected, atol=1e-6)


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_temperature_fit_recovers_the_temperature_that_made_the_data(true_t: float) -> None:
    """Labels drawn from softmax(z); the model reports softmax(z * true_t): the fitted
    temperature undoes the distortion."""
    rng = np.random.default_rng(1)
    z = rng.normal(scale=2.0, size=(4000, 5))
    p_true = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(5, p=row) for row in p_true])
    reported = np.exp(z * true_t) / np.exp(z * true_t).sum(axis=1, keepdims=True)
    assert temperature_fit(reported, labels) == pytest.approx(true_t, rel=0.15)


def test_too_few_rows_leave_the_temperature_at_one() -> None:
    assert temperature_fit(np.full((5, 2), 0.5), np.zeros(5, dtype=np.int64)) == 1.0
    assert temperature_fit(np.full((20, 2), 0.5), np.full(20, -1)) == 1.0
