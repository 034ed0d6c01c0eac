"""Tests for activelearn.evaluation against scikit-learn and brute-force references."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, top_k_accuracy_score
from sklearn.model_selection import StratifiedGroupKFold, cross_val_predict

from activelearn.evaluation import (
    CrossValidated,
    EvaluationError,
    LearningCurve,
    accuracy_threshold,
    coverage_at,
    cross_validated_probabilities,
    event_probabilities,
    learning_curve_fit,
)

# ------------------------------------------------------------------------- helpers


def blobs(
    *, n_classes: int, groups_per_class: int, crops: int, seed: int, spread: float = 1.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features (L, 4) float32, labels (L,) int64, groups (L,) int64): each group is
    one capture event of ``crops`` rows with a single label, near its class centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, 3.0, size=(n_classes, 4))
    n_groups = n_classes * groups_per_class
    group_label = np.repeat(np.arange(n_classes), groups_per_class) * 10 + 3  # ids, not 0..C-1
    groups = np.repeat(np.arange(n_groups), crops)
    labels = np.repeat(group_label, crops).astype(np.int64)
    x = centres[(labels - 3) // 10] + rng.normal(0.0, spread, size=(labels.size, 4))
    return x.astype(np.float32), labels, groups


def logreg_train(x: np.ndarray, y: np.ndarray, random_state: int) -> LogisticRegression:
    return LogisticRegression(max_iter=1000, random_state=random_state).fit(x, y)


def logreg_proba(model: LogisticRegression, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return model.predict_proba(x), model.classes_


class Prior:
    """A model that predicts the training class frequencies; copes with one class."""

    def __init__(self, y: np.ndarray) -> None:
        self.classes, counts = np.unique(y, return_counts=True)
        self.prior = counts / counts.sum()


def prior_train(x: np.ndarray, y: np.ndarray, random_state: int) -> Prior:
    return Prior(y)


def prior_proba(model: Prior, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.tile(model.prior, (x.shape[0], 1)), model.classes


def run_cv(x: np.ndarray, y: np.ndarray, g: np.ndarray, **kwargs: Any) -> CrossValidated:
    kwargs.setdefault("train", logreg_train)
    kwargs.setdefault("predict_proba", logreg_proba)
    kwargs.setdefault("random_state", 0)
    return cross_validated_probabilities(x, y, groups=g, **kwargs)


# ----------------------------------------------------------------- cross-validation


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_cv_matches_sklearn_cross_val_predict(seed: int) -> None:
    x, y, g = blobs(n_classes=4, groups_per_class=5, crops=3, seed=seed)
    result = run_cv(x, y, g, n_splits=4, random_state=seed)
    cv = StratifiedGroupKFold(n_splits=4, shuffle=True, random_state=seed)
    expected = cross_val_predict(
        LogisticRegression(max_iter=1000, random_state=seed),
        x,
        y,
        groups=g,
        cv=cv,
        method="predict_proba",
    )
    np.testing.assert_array_equal(result.classes, np.unique(y))
    assert result.probabilities.dtype == np.float32
    np.testing.assert_allclose(result.probabilities, expected, atol=1e-6)
    np.testing.assert_array_equal(result.predicted, result.classes[expected.argmax(axis=1)])
    assert result.accuracy == pytest.approx(accuracy_score(y, result.predicted))
    assert result.n_splits == 4


def test_cv_accepts_model_classes_in_any_order() -> None:
    x, y, g = blobs(n_classes=3, groups_per_class=4, crops=2, seed=6)

    def reversed_proba(model: LogisticRegression, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        probs, classes = logreg_proba(model, xs)
        return probs[:, ::-1], classes[::-1]

    expected = run_cv(x, y, g)
    result = run_cv(x, y, g, predict_proba=reversed_proba)
    np.testing.assert_array_equal(result.probabilities, expected.probabilities)


def test_cv_outputs_are_consistent() -> None:
    x, y, g = blobs(n_classes=3, groups_per_class=4, crops=2, seed=5)
    result = run_cv(x, y, g)
    rows = np.arange(y.size)
    best = result.probabilities.argmax(axis=1)
    np.testing.assert_array_equal(result.confidence, result.probabilities[rows, best])
    np.testing.assert_array_equal(result.correct, result.predicted == y)
    assert result.predicted.dtype == np.int64 and result.classes.dtype == np.int64
    assert result.correct.dtype == np.bool_ and result.top5_correct.dtype == np.bool_
    # 3 classes, all seen by every fold's model: the true label is always in the top 5.
    assert result.top5_correct.all() and result.top5_accuracy == 1.0
    np.testing.assert_allclose(result.probabilities.sum(axis=1), 1.0, atol=1e-5)


def test_cv_top5_matches_sklearn_top_k_accuracy() -> None:
    x, y, g = blobs(n_classes=8, groups_per_class=5, crops=2, seed=3, spread=4.0)
    result = run_cv(x, y, g)
    assert result.top5_accuracy == pytest.approx(
        top_k_accuracy_score(y, result.probabilities, k=5, labels=result.classes)
    )
    assert result.top5_accuracy >= result.accuracy


def test_cv_never_splits_a_capture_event() -> None:
    x, y, g = blobs(n_classes=3, groups_per_class=4, crops=3, seed=1)
    x[:, 0] = np.arange(y.size)  # row index rides along in the features
    trained: list[set[int]] = []
    tested: list[np.ndarray] = []

    def train(xs: np.ndarray, ys: np.ndarray, random_state: int) -> Prior:
        assert random_state == 7
        assert xs.dtype == np.float32 and ys.dtype == np.int64
        trained.append(set(xs[:, 0].astype(int).tolist()))
        return Prior(ys)

    def proba(model: Prior, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        tested.append(xs[:, 0].astype(int))
        return prior_proba(model, xs)

    result = run_cv(x, y, g, train=train, predict_proba=proba, random_state=7)
    all_tested = np.concatenate(tested)
    np.testing.assert_array_equal(np.sort(all_tested), np.arange(y.size))  # each row once
    for train_rows, test_rows in zip(trained, tested, strict=True):
        assert not set(g[list(train_rows)]) & set(g[test_rows])
        assert train_rows | set(test_rows.tolist()) == set(range(y.size))
        assert (result.folds[test_rows] == result.folds[test_rows[0]]).all()


def test_cv_string_groups_match_integer_groups() -> None:
    x, y, g = blobs(n_classes=3, groups_per_class=3, crops=2, seed=2)
    as_ints = run_cv(x, y, g)
    # Zero-padded so that string order equals integer order: same folds either way.
    as_strings = run_cv(x, y, np.array([f"event-{i:03d}" for i in g]))
    np.testing.assert_array_equal(as_ints.probabilities, as_strings.probabilities)
    np.testing.assert_array_equal(as_ints.folds, as_strings.folds)


def test_cv_is_deterministic_for_a_seed() -> None:
    x, y, g = blobs(n_classes=3, groups_per_class=5, crops=2, seed=4)
    first, second = run_cv(x, y, g, random_state=11), run_cv(x, y, g, random_state=11)
    np.testing.assert_array_equal(first.probabilities, second.probabilities)
    np.testing.assert_array_equal(first.folds, second.folds)


def test_cv_singleton_class_gets_zero_column_in_its_fold() -> None:
    x, y, g = blobs(n_classes=2, groups_per_class=4, crops=2, seed=0)
    x = np.vstack([x, np.zeros((1, 4), dtype=np.float32)])
    y = np.append(y, 99)
    g = np.append(g, 1000)
    result = run_cv(x, y, g, train=prior_train, predict_proba=prior_proba)
    col = int(np.searchsorted(result.classes, 99))
    assert result.probabilities[-1, col] == 0.0
    assert not result.correct[-1] and not result.top5_correct[-1]  # unseen: never counts


def test_cv_falls_back_to_fewer_splits() -> None:
    x, y, g = blobs(n_classes=2, groups_per_class=2, crops=3, seed=0)  # 4 groups
    assert run_cv(x, y, g, n_splits=10).n_splits == 4
    # Largest class has 2 rows: StratifiedGroupKFold cannot make more than 2 folds.
    x2 = np.arange(8, dtype=np.float32).reshape(4, 2)
    y2 = np.array([1, 1, 2, 3])
    result = run_cv(x2, y2, np.arange(4), n_splits=5, train=prior_train, predict_proba=prior_proba)
    assert result.n_splits == 2
    assert set(result.folds.tolist()) == {0, 1}


def test_cv_handles_single_class_training_fold() -> None:
    # Two groups: each fold trains on one group; the injected model copes with one class.
    x = np.zeros((4, 2), dtype=np.float32)
    result = run_cv(
        x,
        np.array([1, 1, 2, 2]),
        np.array([0, 0, 1, 1]),
        train=prior_train,
        predict_proba=prior_proba,
    )
    assert result.n_splits == 2
    assert result.accuracy == 0.0  # each fold only knows the other class


@pytest.mark.parametrize(
    ("labels", "groups", "message"),
    [
        ([1, 2, 1, 2], [5, 5, 5, 5], "need at least 2 capture events"),
        ([1, 1, 1, 1], [1, 2, 3, 4], "need at least 2 classes"),
        ([1, 2, 3, 4], [1, 2, 3, 4], "need at least 2 examples"),
    ],
)
def test_cv_rejects_too_little_data(labels: list[int], groups: list[int], message: str) -> None:
    x = np.zeros((4, 2), dtype=np.float32)
    with pytest.raises(EvaluationError, match=message):
        run_cv(x, np.array(labels), np.array(groups))


def test_cv_rejects_bad_input() -> None:
    x, y, g = blobs(n_classes=2, groups_per_class=3, crops=2, seed=0)
    bad_x = x.copy()
    bad_x[0, 0] = np.nan
    cases: list[dict[str, Any]] = [
        {"x": x[:, 0]},
        {"x": bad_x},
        {"y": y.astype(float)},
        {"y": y[:-1]},
        {"g": g[:-1]},
        {"g": np.array([1, "a"] * (y.size // 2), dtype=object)},
        {"n_splits": 1},
        {"random_state": -1},
        {"random_state": True},
    ]
    for case in cases:
        args = {"x": x, "y": y, "g": g, **case}
        extra = {k: v for k, v in args.items() if k not in ("x", "y", "g")}
        with pytest.raises(EvaluationError):
            run_cv(args["x"], args["y"], args["g"], **extra)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (lambda p, c: p, "tuple"),
        (lambda p, c: (p[:, :1], c), "shape"),
        (lambda p, c: (p, c + 1000), "not among the labels"),
        (lambda p, c: (p * 3.0, c), "sum to 1"),
        (lambda p, c: (p * 0.5, c), "sum to 1"),
        (lambda p, c: (p[:, ::-1] - 0.5, c), "non-negative"),
        (lambda p, c: (p, np.array([c[0], c[0]])), "duplicates"),
        (lambda p, c: (p, c.astype(float)), "integer"),
    ],
)
def test_cv_rejects_malformed_predict_proba(output: Any, message: str) -> None:
    x, y, g = blobs(n_classes=2, groups_per_class=3, crops=2, seed=0)

    def proba(model: LogisticRegression, xs: np.ndarray) -> Any:
        return output(*logreg_proba(model, xs))

    with pytest.raises(EvaluationError, match=message):
        run_cv(x, y, g, predict_proba=proba)


# ------------------------------------------------------------ confidence threshold


def brute_threshold(
    conf: np.ndarray, correct: np.ndarray, target: float
) -> tuple[float | None, float | None, float]:
    """Try every distinct confidence as t; keep the lowest that reaches the target."""
    best: tuple[float | None, float | None, float] = (None, None, 0.0)
    for t in sorted(set(conf.tolist()), reverse=True):
        kept = conf >= t
        acc = correct[kept].sum() / kept.sum()
        if acc >= target:
            best = (t, float(acc), float(kept.mean()))
    return best


@pytest.mark.parametrize("seed", range(30))
def test_threshold_matches_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    # Rounded confidences make many ties; correctness more likely when confident.
    conf = np.round(rng.random(n), 1).astype(np.float32)
    correct = rng.random(n) < conf
    for target in (0.5, 0.7, 0.8, 0.9, 0.95, 1.0):
        result = accuracy_threshold(conf, correct, target=target)
        t, acc, cov = brute_threshold(conf, correct, target)
        assert result.threshold == t
        assert result.accuracy_at_threshold == acc
        assert result.coverage == pytest.approx(cov)
        assert result.n == n and result.target == target
        assert coverage_at(conf, result.threshold) == pytest.approx(result.coverage)


def test_threshold_ties_go_in_together() -> None:
    conf = np.array([0.9, 0.8, 0.8])
    result = accuracy_threshold(conf, np.array([True, True, False]), target=1.0)
    assert result.threshold == 0.9 and result.coverage == pytest.approx(1 / 3)


def test_threshold_takes_lowest_not_first_failure() -> None:
    # The top prediction alone is wrong (0% accurate), yet all four together are 75%.
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    result = accuracy_threshold(conf, np.array([False, True, True, True]), target=0.75)
    assert result.threshold == 0.6
    assert result.accuracy_at_threshold == 0.75 and result.coverage == 1.0


def test_threshold_none_when_target_unreachable() -> None:
    result = accuracy_threshold(np.array([0.9, 0.5]), np.array([False, False]), target=0.5)
    assert result.threshold is None and result.accuracy_at_threshold is None
    assert result.coverage == 0.0


def test_threshold_is_frozen() -> None:
    result = accuracy_threshold(np.array([0.9]), np.array([True]), target=0.5)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.threshold = 0.1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("conf", "correct", "target"),
    [
        ([0.5], [True], 0.0),
        ([0.5], [True], 1.5),
        ([0.5], [True], float("nan")),
        ([0.5], [True], True),
        ([0.5], [1], 0.5),
        ([0.5, 0.4], [True], 0.5),
        ([], [], 0.5),
        ([np.nan], [True], 0.5),
    ],
)
def test_threshold_rejects_bad_input(conf: list[float], correct: list[Any], target: Any) -> None:
    with pytest.raises(EvaluationError):
        accuracy_threshold(np.array(conf, dtype=float), np.array(correct), target=target)


def test_coverage_at() -> None:
    conf = np.array([0.2, 0.5, 0.5, 0.9], dtype=np.float32)
    assert coverage_at(conf, 0.5) == 0.75
    assert coverage_at(conf, 0.95) == 0.0
    assert coverage_at(conf, None) == 0.0
    assert coverage_at(np.array([]), 0.5) == 0.0
    with pytest.raises(EvaluationError):
        coverage_at(conf, float("inf"))
    with pytest.raises(EvaluationError):
        coverage_at(conf.reshape(2, 2), 0.5)


# ------------------------------------------------------------------ capture events


def brute_events(probs: np.ndarray, ids: np.ndarray) -> dict[Any, tuple[np.ndarray, int]]:
    rows: dict[Any, list[int]] = {}
    for i, event in enumerate(ids.tolist()):
        rows.setdefault(event, []).append(i)
    return {e: (probs[r].mean(axis=0), len(r)) for e, r in rows.items()}


@pytest.mark.parametrize("string_ids", [False, True])
def test_events_match_brute_force(string_ids: bool) -> None:
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=40).astype(np.float32)
    ids = rng.integers(0, 12, size=40)
    if string_ids:
        ids = np.array([f"ev{i}" for i in ids])
    result = event_probabilities(probs, ids)
    expected = brute_events(probs, ids)
    assert result.event_ids.tolist() == sorted(expected)  # sorted id order
    assert result.probabilities.dtype == np.float32 and result.n_crops.dtype == np.int64
    for row, event in enumerate(result.event_ids.tolist()):
        mean, count = expected[event]
        np.testing.assert_allclose(result.probabilities[row], mean, rtol=1e-6)
        assert result.n_crops[row] == count
    np.testing.assert_array_equal(result.event_ids[result.event_index], ids)


def test_events_empty_input() -> None:
    result = event_probabilities(np.zeros((0, 3)), np.array([], dtype=np.int64))
    assert result.probabilities.shape == (0, 3) and result.n_crops.shape == (0,)


def test_events_scale_to_a_million_rows() -> None:
    rng = np.random.default_rng(1)
    n = 1_000_000
    probs = rng.random((n, 4), dtype=np.float32)
    ids = rng.integers(0, 200_000, size=n)
    start = time.perf_counter()
    result = event_probabilities(probs, ids)
    assert time.perf_counter() - start < 10.0  # ~0.3 s; generous for slow CI
    assert result.n_crops.sum() == n
    first = result.event_ids[0]
    np.testing.assert_allclose(result.probabilities[0], probs[ids == first].mean(axis=0), rtol=1e-5)


@pytest.mark.parametrize(
    ("probs", "ids"),
    [
        (np.zeros(3), np.arange(3)),
        (np.zeros((3, 2)), np.arange(2)),
        (np.full((2, 2), np.nan), np.arange(2)),
        (np.zeros((2, 2)), np.array([1, "a"], dtype=object)),
    ],
)
def test_events_reject_bad_input(probs: np.ndarray, ids: np.ndarray) -> None:
    with pytest.raises(EvaluationError):
        event_probabilities(probs, ids)


# ------------------------------------------------------------------ learning curve

N_POINTS = np.array([25, 50, 100, 200, 400, 800, 1600, 3200])


def gain(n: float, b: float, c: float) -> float:
    return b * (n ** (-c) - (n + 100) ** (-c))


@pytest.mark.parametrize(
    ("a", "b", "c"), [(0.92, 1.5, 0.6), (0.8, 0.5, 0.3), (0.97, 3.0, 1.2), (0.6, 20.0, 2.5)]
)
def test_curve_recovers_known_parameters(a: float, b: float, c: float) -> None:
    curve = learning_curve_fit(N_POINTS, a - b * N_POINTS ** (-c))
    assert curve.fitted and curve.reason is None and curve.params is not None
    np.testing.assert_allclose(curve.params, (a, b, c), rtol=1e-4)
    assert curve.asymptote == pytest.approx(a, rel=1e-4)
    assert curve.rmse is not None and curve.rmse < 1e-6
    assert curve.last_n == 3200 and curve.n_points == N_POINTS.size
    assert curve.gain_per_100 == pytest.approx(gain(3200, b, c), rel=1e-3, abs=1e-9)


def test_curve_recovers_parameters_from_noisy_points() -> None:
    rng = np.random.default_rng(0)
    acc = 0.92 - 1.5 * N_POINTS ** (-0.6) + rng.normal(0.0, 0.003, N_POINTS.size)
    curve = learning_curve_fit(N_POINTS[::-1], acc[::-1])  # order does not matter
    assert curve.params is not None
    np.testing.assert_allclose(curve.params, (0.92, 1.5, 0.6), rtol=0.15)


def test_curve_plateau_is_smallest_n_below_min_gain() -> None:
    curve = learning_curve_fit(N_POINTS, 0.92 - 1.5 * N_POINTS ** (-0.6), min_gain=0.002)
    assert curve.params is not None and curve.labels_to_plateau is not None
    _, b, c = curve.params
    scan = np.arange(1, 100_000, dtype=np.float64)
    below = b * (scan ** (-c) - (scan + 100) ** (-c)) < 0.002
    assert curve.labels_to_plateau == int(scan[below.argmax()])  # first n below


def test_curve_plateau_none_when_out_of_sight() -> None:
    acc = 0.9 - 1.0 * N_POINTS ** (-0.5)
    assert learning_curve_fit(N_POINTS, acc, min_gain=1e-12).labels_to_plateau is None


def test_curve_predict() -> None:
    curve = learning_curve_fit(N_POINTS, 0.9 - 2.0 * N_POINTS ** (-0.5))
    np.testing.assert_allclose(curve.predict(np.array([100.0, 10_000.0])), [0.7, 0.88])
    assert float(curve.predict(400)) == pytest.approx(0.8)
    assert curve.predict(3300) - curve.predict(3200) == pytest.approx(curve.gain_per_100)
    with pytest.raises(EvaluationError):
        curve.predict(0)


@pytest.mark.parametrize(
    "acc", [[0.7, 0.7, 0.7, 0.7], [0.8, 0.75, 0.7, 0.65], [0.0, 0.0, 0.0, 0.0], [1.0] * 4]
)
def test_curve_flat_or_decreasing_means_no_gain(acc: list[float]) -> None:
    curve = learning_curve_fit([100, 200, 400, 800], acc)
    assert curve.fitted and curve.params is not None
    assert curve.asymptote == pytest.approx(np.mean(acc), abs=1e-3)
    assert curve.gain_per_100 == pytest.approx(0.0, abs=1e-6)
    # Already on the plateau at the first point (below it the fit is unconstrained).
    assert curve.labels_to_plateau is not None and curve.labels_to_plateau <= 100


@pytest.mark.parametrize(
    ("n", "acc"), [([100, 200], [0.7, 0.8]), ([100, 100, 200], [0.7, 0.7, 0.8]), ([], [])]
)
def test_curve_too_few_points_is_not_fitted(n: list[int], acc: list[float]) -> None:
    curve = learning_curve_fit(n, acc)
    assert isinstance(curve, LearningCurve)
    assert not curve.fitted and curve.reason is not None and "at least 3" in curve.reason
    assert curve.params is None and curve.gain_per_100 is None
    assert curve.labels_to_plateau is None
    with pytest.raises(EvaluationError, match="no learning curve"):
        curve.predict(100)


@pytest.mark.parametrize(
    ("n", "acc", "min_gain"),
    [
        ([0, 100, 200], [0.5, 0.6, 0.7], 0.005),
        ([100, 200, 400], [0.5, 0.6, 1.2], 0.005),
        ([100, 200, 400], [0.5, 0.6], 0.005),
        ([100, 200, 400], [0.5, np.nan, 0.7], 0.005),
        ([100, 200, 400], [0.5, 0.6, 0.7], 0.0),
    ],
)
def test_curve_rejects_bad_input(n: list[float], acc: list[float], min_gain: float) -> None:
    with pytest.raises(EvaluationError):
        learning_curve_fit(n, acc, min_gain=min_gain)
