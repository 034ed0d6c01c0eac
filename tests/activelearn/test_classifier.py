"""Tests for activelearn.classifier."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from activelearn.classifier import (
    ClassifierError,
    Predictions,
    TrainedClassifier,
    class_weights,
    classifier_load,
    classifier_predict,
    classifier_probabilities,
    classifier_save,
    classifier_train,
    ensemble_predict_proba,
    ensemble_save,
    ensemble_train,
    oversample_rows,
    probabilities_average,
)


def blobs(seed: int = 0, per_class: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated Gaussian blobs in 4-D with non-contiguous label ids 3, 7, 11."""
    rng = np.random.default_rng(seed)
    centres = np.array([[5, 0, 0, 0], [0, 5, 0, 0], [0, 0, 5, 0]], dtype=np.float32)
    x = np.concatenate([c + 0.3 * rng.normal(size=(per_class, 4)) for c in centres]).astype(
        np.float32
    )
    y = np.repeat(np.array([3, 7, 11], dtype=np.int64), per_class)
    return x, y


@pytest.fixture(scope="module")
def trained() -> tuple[TrainedClassifier, np.ndarray, np.ndarray]:
    x, y = blobs()
    return classifier_train(x, y, random_state=0), x, y


def test_learns_separable_toy_set(
    trained: tuple[TrainedClassifier, np.ndarray, np.ndarray],
) -> None:
    clf, x, y = trained
    assert clf.classes.tolist() == [3, 7, 11] and clf.classes.dtype == np.int64
    assert clf.n_train == 60 and clf.n_features == 4 and clf.hidden_layer_sizes == (150, 100)
    pred = classifier_predict(clf, x)
    np.testing.assert_array_equal(pred.label, y)
    assert float((pred.label == y).mean()) == 1.0
    x_test, y_test = blobs(seed=1)
    np.testing.assert_array_equal(classifier_predict(clf, x_test).label, y_test)


def test_top_k_shapes_sorted_and_sum(
    trained: tuple[TrainedClassifier, np.ndarray, np.ndarray],
) -> None:
    clf, x, _ = trained
    pred = classifier_predict(clf, x, top_k=5)  # k is capped at C = 3
    assert pred.top_labels.shape == (60, 3) and pred.top_probs.shape == (60, 3)
    assert pred.top_labels.dtype == np.int64 and pred.top_probs.dtype == np.float32
    assert np.all(np.diff(pred.top_probs, axis=1) <= 0), "probabilities must be best-first"
    assert np.all(pred.top_probs.sum(axis=1) <= 1.0 + 1e-5)
    assert np.all(np.sort(pred.top_labels, axis=1) == np.array([3, 7, 11]))
    top2 = classifier_predict(clf, x, top_k=2)
    np.testing.assert_array_equal(top2.top_labels, pred.top_labels[:, :2])
    assert np.all(top2.top_probs.sum(axis=1) <= 1.0 + 1e-5)
    np.testing.assert_array_equal(pred.confidence, pred.top_probs[:, 0])


def test_batched_predict_identical(
    trained: tuple[TrainedClassifier, np.ndarray, np.ndarray],
) -> None:
    clf, x, _ = trained
    whole = classifier_predict(clf, x)
    batched = classifier_predict(clf, x, batch_size=7)
    np.testing.assert_array_equal(whole.top_labels, batched.top_labels)
    # BLAS blocking differs with batch shape: float32 rounding only.
    np.testing.assert_allclose(whole.top_probs, batched.top_probs, rtol=1e-5, atol=1e-7)
    empty = classifier_predict(clf, np.zeros((0, 4), dtype=np.float32))
    assert empty.top_labels.shape == (0, 3)


def test_deterministic_for_seed() -> None:
    x, y = blobs()
    a = classifier_predict(classifier_train(x, y, random_state=4), x).top_probs
    b = classifier_predict(classifier_train(x, y, random_state=4), x).top_probs
    np.testing.assert_array_equal(a, b)


def test_save_load_round_trip(
    trained: tuple[TrainedClassifier, np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    clf, x, _ = trained
    path = tmp_path / "clf.joblib"
    classifier_save(clf, path)
    assert [p.name for p in tmp_path.iterdir()] == ["clf.joblib"], "temp file must be gone"
    loaded = classifier_load(path)
    before, after = classifier_predict(clf, x), classifier_predict(loaded, x)
    np.testing.assert_array_equal(before.top_labels, after.top_labels)
    np.testing.assert_array_equal(before.top_probs, after.top_probs)
    assert loaded.classes.tolist() == clf.classes.tolist() and loaded.random_state == 0
    classifier_save(clf, path)  # overwriting is fine
    assert classifier_load(path).n_train == 60


def test_load_rejects_foreign_file(tmp_path: Path) -> None:
    import joblib

    bad = tmp_path / "other.joblib"
    joblib.dump({"hello": 1}, bad)
    with pytest.raises(ClassifierError, match="not a Trapwise classifier"):
        classifier_load(bad)
    garbage = tmp_path / "garbage.joblib"
    garbage.write_bytes(b"not a pickle")
    with pytest.raises(ClassifierError):
        classifier_load(garbage)
    with pytest.raises(FileNotFoundError):
        classifier_load(tmp_path / "missing.joblib")


def test_single_class(tmp_path: Path) -> None:
    x = np.random.default_rng(0).normal(size=(5, 3)).astype(np.float32)
    clf = classifier_train(x, np.full(5, 9, dtype=np.int64), random_state=0)
    assert clf.model is None and clf.classes.tolist() == [9]
    pred = classifier_predict(clf, np.ones((4, 3), dtype=np.float32), top_k=5)
    assert pred.top_labels.shape == (4, 1)
    assert pred.label.tolist() == [9, 9, 9, 9]
    assert pred.confidence.tolist() == [1.0, 1.0, 1.0, 1.0]
    classifier_save(clf, tmp_path / "one.joblib")
    assert classifier_load(tmp_path / "one.joblib").classes.tolist() == [9]


def test_non_convergence_reported_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    x, y = blobs()
    with caplog.at_level(logging.WARNING, logger="activelearn.classifier"):
        clf = classifier_train(x, y, random_state=0, max_iter=1)
    assert clf.converged is False and clf.n_iter == 1
    assert "did not converge" in caplog.text
    assert classifier_predict(clf, x).top_labels.shape == (60, 3)


def test_tiny_training_set() -> None:
    x = np.array([[0.0, 0.0], [1.0, 1.0]], dtype=np.float32)
    clf = classifier_train(x, np.array([1, 2]), random_state=0)
    assert classifier_predict(clf, x).label.tolist() == [1, 2]


def test_bad_input_rejected() -> None:
    x, y = blobs()
    with pytest.raises(ClassifierError, match="zero"):
        classifier_train(
            np.zeros((0, 4), dtype=np.float32), np.zeros(0, dtype=np.int64), random_state=0
        )
    with pytest.raises(ClassifierError, match="labels"):
        classifier_train(x, y[:-1], random_state=0)
    with pytest.raises(ClassifierError, match="integer"):
        classifier_train(x, y.astype(np.float64), random_state=0)
    with pytest.raises(ClassifierError, match="NaN"):
        classifier_train(
            np.full((3, 2), np.nan, dtype=np.float32), np.array([0, 1, 2]), random_state=0
        )
    clf = classifier_train(x, y, random_state=0, max_iter=5)
    with pytest.raises(ClassifierError, match="width"):
        classifier_predict(clf, np.zeros((2, 5), dtype=np.float32))
    with pytest.raises(ValueError, match="top_k"):
        classifier_predict(clf, x, top_k=0)


def test_predictions_properties() -> None:
    p = Predictions(
        top_labels=np.array([[2, 1], [1, 2]], dtype=np.int64),
        top_probs=np.array([[0.7, 0.3], [0.6, 0.4]], dtype=np.float32),
    )
    assert p.label.tolist() == [2, 1]
    np.testing.assert_allclose(p.confidence, [0.7, 0.6])


def test_large_label_sets_stop_on_held_out_loss() -> None:
    # Pure noise: the training loss keeps falling as the net memorises, the held-out loss does
    # not, so training stops after the patience window instead of running 200 epochs.
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2500, 16)).astype(np.float32)
    y = rng.integers(0, 5, 2500)
    clf = classifier_train(x, y, random_state=3)
    assert clf.converged and clf.n_iter < 40
    again = classifier_train(x, y, random_state=3)
    probs = classifier_predict(clf, x[:50]).top_probs
    np.testing.assert_array_equal(probs, classifier_predict(again, x[:50]).top_probs)


def test_sklearn_backend_still_available() -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((60, 8)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    clf = classifier_train(x, y, random_state=0, backend="sklearn", max_iter=50)
    assert clf.algorithm == "sklearn MLPClassifier (150, 100)"
    assert classifier_predict(clf, x).top_labels.shape == (60, 2)
    with pytest.raises(ClassifierError, match="unknown backend"):
        classifier_train(x, y, random_state=0, backend="keras")


# --- Class balance and ensembles --------------------------------------------------------------


def imbalanced(seed: int, n_major: int, n_minor: int) -> tuple[np.ndarray, np.ndarray]:
    """Two overlapping 2-D Gaussians: a common class 4 and a rare class 9 shifted by 1.5 sd."""
    rng = np.random.default_rng(seed)
    x = np.concatenate([rng.normal(0, 1, (n_major, 2)), rng.normal([1.5, 0], 1, (n_minor, 2))])
    y = np.r_[np.full(n_major, 4), np.full(n_minor, 9)].astype(np.int64)
    return x.astype(np.float32), y


@pytest.mark.parametrize("backend", ["torch", "sklearn"])
def test_class_balance_raises_the_rare_class_recall(backend: str) -> None:
    x, y = imbalanced(0, n_major=300, n_minor=12)
    x_test, y_test = imbalanced(1, n_major=400, n_minor=400)
    recall = {}
    for balance in ("none", "weighted", "oversample"):
        clf = classifier_train(
            x, y, random_state=0, backend=backend, class_balance=balance, max_iter=60
        )
        assert clf.class_balance == balance
        predicted = classifier_predict(clf, x_test).label
        recall[balance] = float(np.mean(predicted[y_test == 9] == 9))
    # Unbalanced, the rare class is almost never predicted (about 0.1 to 0.2 here); either
    # remedy lifts its recall to about 0.5 to 0.7.
    assert recall["weighted"] > recall["none"] + 0.2, recall
    assert recall["oversample"] > recall["none"] + 0.2, recall


def test_class_weights_follow_the_preprint_normalised() -> None:
    y = np.array([5] * 6 + [2] * 3 + [8] * 1)  # N = 10, C = 3
    classes, weights = class_weights(y)
    assert classes.tolist() == [2, 5, 8]
    # f_i = N / (C n_i): 10 / 9, 10 / 18, 10 / 3; they average 1 over the rows.
    np.testing.assert_allclose(weights, [10 / 9, 10 / 18, 10 / 3])
    np.testing.assert_allclose((weights * np.array([3, 6, 1])).sum(), 10)
    with pytest.raises(ClassifierError, match="at least one label"):
        class_weights(np.array([], dtype=np.int64))


def test_weighted_torch_loss_uses_the_class_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[torch.Tensor | None] = []
    real = torch.nn.functional.cross_entropy

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        seen.append(kwargs.get("weight"))
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "cross_entropy", spy)
    y = np.array([3] * 8 + [7] * 2)
    x = np.random.default_rng(0).normal(size=(10, 3)).astype(np.float32)
    classifier_train(x, y, random_state=0, max_iter=2, class_balance="weighted")
    first = seen[0]
    assert first is not None and all(w is not None for w in seen)
    np.testing.assert_allclose(first.numpy(), [10 / 16, 10 / 4], rtol=1e-6)
    seen.clear()
    classifier_train(x, y, random_state=0, max_iter=2)
    assert seen and all(w is None for w in seen)


def test_oversample_rows_balances_with_replacement_and_is_seeded() -> None:
    y = np.array([1, 1, 1, 1, 1, 2, 2, 3])
    rows = oversample_rows(y, random_state=0)
    assert np.bincount(y[rows]).tolist() == [0, 5, 5, 5]
    assert set(range(8)) <= set(rows.tolist()), "every original row is kept"
    assert np.all(np.isin(rows[y[rows] == 3], [7]))
    np.testing.assert_array_equal(rows, oversample_rows(y, random_state=0))
    np.testing.assert_array_equal(
        oversample_rows(np.array([4, 4, 6, 6]), random_state=1), [0, 1, 2, 3]
    )


def test_unknown_class_balance_is_refused() -> None:
    x, y = blobs()
    with pytest.raises(ClassifierError, match="unknown class_balance 'smote'.*none, weighted"):
        classifier_train(x, y, random_state=0, class_balance="smote")


def test_probabilities_average_aligns_classes_over_their_union() -> None:
    a = np.array([[0.7, 0.3], [0.2, 0.8]])  # classes 5, 9
    b = np.array([[0.5, 0.25, 0.25], [0.0, 0.5, 0.5]])  # classes 9, 2, 5
    mean, classes = probabilities_average([a, b], [np.array([5, 9]), np.array([9, 2, 5])])
    assert classes.tolist() == [2, 5, 9] and mean.dtype == np.float32
    # Class 2 is unknown to model a: 0 there.
    np.testing.assert_allclose(mean, [[0.125, 0.475, 0.4], [0.25, 0.35, 0.4]], rtol=1e-6)
    np.testing.assert_allclose(mean.sum(axis=1), 1.0, rtol=1e-6)
    single, same = probabilities_average([a], [np.array([5, 9])])
    np.testing.assert_allclose(single, a)
    assert same.tolist() == [5, 9]


def test_probabilities_average_refuses_mismatches() -> None:
    with pytest.raises(ClassifierError, match="at least one"):
        probabilities_average([], [])
    with pytest.raises(ClassifierError, match=r"model 1: probabilities of shape \(3, 2\)"):
        probabilities_average([np.ones((2, 2)), np.ones((3, 2))], [np.arange(2), np.arange(2)])
    with pytest.raises(ClassifierError, match="distinct"):
        probabilities_average([np.ones((2, 2))], [np.array([1, 1])])


# --- ensembles (the product's classifier: ensemble_train / ensemble_predict_proba) ------------


def test_an_ensemble_of_one_is_the_single_model() -> None:
    x, y = blobs(per_class=8)
    members = ensemble_train(x, y, random_state=5, class_balance="weighted", size=1)
    single = classifier_train(x, y, random_state=5, class_balance="weighted")
    assert len(members) == 1 and members[0].random_state == 5
    assert members[0].class_balance == "weighted"
    probs, classes = ensemble_predict_proba(members, x)
    np.testing.assert_array_equal(probs, classifier_probabilities(single, x))
    np.testing.assert_array_equal(classes, single.classes)
    # A size below one still trains the one model.
    (zero,) = ensemble_train(x, y, random_state=5, class_balance="weighted", size=0)
    np.testing.assert_array_equal(classifier_probabilities(zero, x), probs)


def test_ensemble_members_take_consecutive_seeds_and_their_probabilities_average() -> None:
    x, y = blobs(per_class=8)
    members = ensemble_train(x, y, random_state=2**31 - 2, size=3)
    # Seeds seed, seed + 1, ... wrapped into [0, 2**31): the product's scheme.
    assert [m.random_state for m in members] == [2**31 - 2, 2**31 - 1, 0]
    for member in members:
        alone = classifier_train(x, y, random_state=member.random_state)
        np.testing.assert_array_equal(
            classifier_probabilities(member, x), classifier_probabilities(alone, x)
        )
    probs, classes = ensemble_predict_proba(members, x)
    brute = np.zeros((x.shape[0], 3))
    for member in members:
        brute += classifier_probabilities(member, x).astype(np.float64) / 3
    np.testing.assert_array_equal(classes, [3, 7, 11])
    np.testing.assert_allclose(probs, brute, rtol=1e-6, atol=1e-7)
    assert probs.dtype == np.float32


def test_ensemble_of_members_with_different_classes_averages_over_their_union() -> None:
    x, y = blobs(per_class=8)
    first = classifier_train(x, y, random_state=0)
    keep = y != 11
    second = classifier_train(x[keep], y[keep], random_state=1)
    probs, classes = ensemble_predict_proba([first, second], x)
    np.testing.assert_array_equal(classes, [3, 7, 11])
    brute = np.zeros((x.shape[0], 3))
    for member in (first, second):
        for j, label in enumerate(member.classes):
            column = int(np.flatnonzero(classes == label)[0])
            brute[:, column] += classifier_probabilities(member, x)[:, j] / 2
    np.testing.assert_allclose(probs, brute, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    with pytest.raises(ClassifierError):
        ensemble_predict_proba([], x)


def test_ensemble_save_writes_each_member_beside_the_first(tmp_path: Path) -> None:
    x, y = blobs(per_class=5)
    members = ensemble_train(x, y, random_state=3, size=3)
    path = tmp_path / "v4.joblib"
    ensemble_save(members, path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "v4.joblib",
        "v4.m1.joblib",
        "v4.m2.joblib",
    ]
    for member, name in zip(members, ("v4.joblib", "v4.m1.joblib", "v4.m2.joblib"), strict=True):
        loaded = classifier_load(tmp_path / name)
        assert loaded.random_state == member.random_state
        np.testing.assert_array_equal(
            classifier_probabilities(loaded, x), classifier_probabilities(member, x)
        )


def test_the_ml_modules_import_without_django() -> None:
    """Arrays in, dataclasses out: the classifier, the attribute head and the benchmark engine
    load no Django, directly or indirectly (checked in a fresh interpreter)."""
    code = (
        "import sys\n"
        "import activelearn.attributes, activelearn.classifier, activelearn.experiment\n"
        "loaded = sorted(m for m in sys.modules if m == 'django' or m.startswith('django.'))\n"
        "assert not loaded, loaded\n"
    )
    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=root)
