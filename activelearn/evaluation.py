"""How good is the classifier, and is labelling more images still worth it?

Evaluation helpers for the active-learning loop, following Norouzzadeh et al. (2019,
PNAS "Automatically identifying, counting, and describing wild animals in
camera-trap images with deep learning") where they define the method:

* ``cross_validated_probabilities``: out-of-fold class probabilities for the labelled
  set, with folds grouped by capture event (crops of one event never sit in both a
  training and a test fold, which would leak near-duplicate images and inflate
  accuracy) and stratified by label. The classifier is injected as two callables,
  so this module does not depend on ``activelearn.classifier``.
* ``accuracy_threshold`` / ``coverage_at``: the paper's confidence thresholding: the
  lowest confidence threshold whose retained predictions still reach a target
  accuracy, and the share of images it lets through automatically.
* ``event_probabilities``: the paper's capture-event rule: average the probability
  vectors of the crops (or images) of one event.
* ``learning_curve_fit``: an inverse power law ``acc(n) = a - b * n**(-c)`` fitted to
  (labels used, cross-validated accuracy) points, to estimate the plateau and the
  gain from the next labels. It is an extrapolation, i.e. an estimate.

Arrays in, frozen dataclasses out; no Django. All randomness comes from an explicit
``random_state``. Invalid input raises ``EvaluationError`` (a ValueError).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.optimize import OptimizeWarning, curve_fit
from sklearn.model_selection import StratifiedGroupKFold

from activelearn._checks import check_int

__all__ = [
    "CrossValidated",
    "EvaluationError",
    "EventProbabilities",
    "LearningCurve",
    "PredictProbaFn",
    "Threshold",
    "TrainFn",
    "accuracy_threshold",
    "coverage_at",
    "cross_validated_probabilities",
    "event_probabilities",
    "learning_curve_fit",
]

TrainFn = Callable[[np.ndarray, np.ndarray, int], Any]
"""``train(x (n, d) float32, y (n,) int64, random_state) -> model``."""

PredictProbaFn = Callable[[Any, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""``predict_proba(model, x (n, d) float32) -> (probs (n, C_model), classes (C_model,))``."""

# Top-k used for the "top-5 accuracy" the paper reports next to top-1.
_TOP_K = 5

# A float32 softmax row can sum to slightly more or less than 1 by rounding; anything
# beyond this slack means the injected predict_proba returned something that is not
# probabilities.
_PROB_TOLERANCE = 1e-3

# Learning-curve bounds: a in [0, 1] (an accuracy), b >= 0 (accuracy never falls as
# labels are added), c in (0, 3] (c = 0 is a flat line; beyond 3 is a step, not a
# learning curve). The lower bound on c must be > 0 for n**(-c) to decay.
_C_MIN = 1e-3
_C_MAX = 3.0
# Several starting exponents, because a single start can stall in a poor local
# minimum when the points only cover the flat end of the curve.
_C_STARTS = (0.2, 0.5, 1.0, 2.0)
_CURVE_MAX_EVALS = 10_000
# Beyond this many labels, "the plateau" is reported as None (not in sight).
_PLATEAU_SEARCH_MAX = 10**7
_GAIN_STEP = 100


class EvaluationError(ValueError):
    """Raised for invalid evaluation input (shapes, dtypes, ranges, too little data)."""


# --------------------------------------------------------------------------- checks


def _check_int(value: object, *, name: str, minimum: int) -> int:
    return check_int(value, name=name, minimum=minimum, error=EvaluationError)


def _check_real(value: object, *, name: str) -> float:
    """Return ``value`` as a finite float; bools and non-numbers are rejected."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise EvaluationError(f"{name} must be a real number, got {value!r}")
    out = float(value)
    if not math.isfinite(out):
        raise EvaluationError(f"{name} must be finite, got {value!r}")
    return out


def _check_real_array(values: object, *, name: str, ndim: int) -> np.ndarray:
    """Return ``values`` as a finite float array with ``ndim`` dimensions."""
    arr = np.asarray(values)
    if arr.ndim != ndim:
        raise EvaluationError(f"{name} must be {ndim}-D, got shape {arr.shape}")
    # Bools are numbers to numpy but never a meaningful feature/probability/confidence.
    if (
        arr.dtype == np.bool_
        or not np.issubdtype(arr.dtype, np.number)
        or np.issubdtype(arr.dtype, np.complexfloating)
    ):
        raise EvaluationError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        raise EvaluationError(f"{name} contain NaN or infinite values")
    return arr


def _check_length(arr: np.ndarray, *, name: str, n_rows: int, other: str) -> None:
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise EvaluationError(
            f"{name} must have shape ({n_rows},) to match {other}, got {arr.shape}"
        )


def _check_labels(labels: object, *, n_rows: int) -> np.ndarray:
    """Return labels as a (n_rows,) int64 array of label ids."""
    arr = np.asarray(labels)
    _check_length(arr, name="labels", n_rows=n_rows, other="features")
    # Bool and float labels are rejected: label ids are database integers.
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise EvaluationError(f"labels must be integer label ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_bool(values: object, *, name: str, n_rows: int, other: str) -> np.ndarray:
    """Return a (n_rows,) bool array; 0/1 integers are rejected to catch swapped args."""
    arr = np.asarray(values)
    _check_length(arr, name=name, n_rows=n_rows, other=other)
    if arr.dtype != np.bool_:
        raise EvaluationError(f"{name} must be a bool array, got dtype {arr.dtype}")
    return arr


def _factorize(ids: object, *, name: str, n_rows: int, other: str) -> tuple[np.ndarray, np.ndarray]:
    """(sorted unique ids (U,), (n_rows,) int64 position of each row's id in them).

    Any sortable ids work (ints, strings, UUID strings); a mix numpy cannot order
    (e.g. ints and strings in one object array) is rejected rather than guessed.
    """
    arr = np.asarray(ids)
    _check_length(arr, name=name, n_rows=n_rows, other=other)
    try:
        unique, inverse = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise EvaluationError(f"{name} must be mutually comparable ids: {exc}") from exc
    # numpy 2 may give the inverse the input's shape; ravel keeps it (n_rows,).
    return unique, inverse.ravel().astype(np.int64)


# ---------------------------------------------------------------- cross-validation


@dataclass(frozen=True)
class CrossValidated:
    """Out-of-fold predictions for the L labelled rows.

    Every row is predicted exactly once, by a model that never saw its capture event.

    Attributes:
        classes: (C,) int64 sorted unique label ids; column order of ``probabilities``.
        probabilities: (L, C) float32 out-of-fold class probabilities. A class absent
            from a fold's training rows gets probability 0 in that fold.
        predicted: (L,) int64 most probable label id (ties go to the smaller id).
        confidence: (L,) float32 probability of ``predicted``.
        correct: (L,) bool, ``predicted == labels``.
        top5_correct: (L,) bool, the true label is among the fold model's five most
            probable classes (ties to the smaller id, as ``classifier_predict`` ranks
            them). A class the fold's model never saw never counts.
        folds: (L,) int64 index of the test fold each row was predicted in.
        accuracy: mean of ``correct``.
        top5_accuracy: mean of ``top5_correct``.
        n_splits: number of folds the splitter was asked for (may be fewer than
            requested, see ``cross_validated_probabilities``).
    """

    classes: np.ndarray
    probabilities: np.ndarray
    predicted: np.ndarray
    confidence: np.ndarray
    correct: np.ndarray
    top5_correct: np.ndarray
    folds: np.ndarray
    accuracy: float
    top5_accuracy: float
    n_splits: int


def _effective_splits(n_splits: int, *, group_ids: np.ndarray, labels: np.ndarray) -> int:
    """The number of folds the data supports: at most one per group, and at most the
    size of the largest class (StratifiedGroupKFold refuses more).

    Raises EvaluationError when fewer than 2 folds are possible.
    """
    n_groups = int(group_ids.max()) + 1
    classes, counts = np.unique(labels, return_counts=True)
    if n_groups < 2:
        raise EvaluationError(
            f"cross-validation: need at least 2 capture events (groups), got {n_groups}"
        )
    if classes.size < 2:
        raise EvaluationError(f"cross-validation: need at least 2 classes, got {classes.size}")
    largest = int(counts.max())
    if largest < 2:
        raise EvaluationError(
            "cross-validation: need at least 2 examples of at least one class, "
            "got one example of every class"
        )
    return min(n_splits, n_groups, largest)


def _test_folds(
    labels: np.ndarray, group_ids: np.ndarray, *, n_splits: int, random_state: int
) -> np.ndarray:
    """(L,) int64 test-fold index of each row, from a shuffled StratifiedGroupKFold."""
    splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    folds = np.empty(labels.shape[0], dtype=np.int64)
    dummy_x = np.zeros((labels.shape[0], 1))
    with warnings.catch_warnings():
        # "The least populated class has only 1 member": expected with small label
        # sets; such a class simply cannot be predicted in its own fold.
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        for fold, (_, test) in enumerate(splitter.split(dummy_x, labels, group_ids)):
            folds[test] = fold
    return folds


def _fold_probabilities(
    output: object, *, classes: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a fold's ``predict_proba`` output and widen it to all classes.

    Returns ((n_rows, C) float32 probabilities, (C,) bool: columns the model knows).
    """
    if not isinstance(output, tuple | list) or len(output) != 2:
        raise EvaluationError("predict_proba must return a (probabilities, classes) tuple")
    probs = _check_real_array(output[0], name="predict_proba probabilities", ndim=2)
    model_classes = np.asarray(output[1])
    if model_classes.ndim != 1 or not np.issubdtype(model_classes.dtype, np.integer):
        raise EvaluationError("predict_proba classes must be a 1-D integer array")
    if probs.shape != (n_rows, model_classes.size):
        raise EvaluationError(
            f"predict_proba returned probabilities of shape {probs.shape}, "
            f"expected ({n_rows}, {model_classes.size})"
        )
    # Rows must be distributions: an all-zero row would make argmax pick column 0,
    # possibly a class the model never saw.
    if (probs < 0.0).any() or (np.abs(probs.sum(axis=1) - 1.0) > _PROB_TOLERANCE).any():
        raise EvaluationError("predict_proba rows must be non-negative and sum to 1")
    if np.unique(model_classes).size != model_classes.size:
        raise EvaluationError("predict_proba classes contain duplicates")
    if not np.isin(model_classes, classes).all():
        raise EvaluationError("predict_proba returned classes that are not among the labels")
    columns = np.searchsorted(classes, model_classes)
    wide = np.zeros((n_rows, classes.size), dtype=np.float32)
    wide[:, columns] = probs
    known = np.zeros(classes.size, dtype=bool)
    known[columns] = True
    return wide, known


def _top_k_hits(probs: np.ndarray, known: np.ndarray, true_columns: np.ndarray) -> np.ndarray:
    """(n,) bool: the true column is among the top-k known columns of each row."""
    # Unknown columns rank last, so padding zeros never fill a top-5 slot.
    ranked = np.where(known[None, :], probs, -1.0)
    k = min(_TOP_K, int(known.sum()))
    # Stable sort of -p: equal probabilities keep column order (smaller id first).
    top = np.argsort(-ranked, axis=1, kind="stable")[:, :k]
    hits: np.ndarray = (top == true_columns[:, None]).any(axis=1)
    return hits


def cross_validated_probabilities(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    groups: np.ndarray,
    train: TrainFn,
    predict_proba: PredictProbaFn,
    n_splits: int = 5,
    random_state: int,
) -> CrossValidated:
    """Out-of-fold class probabilities for the labelled set, grouped by capture event.

    Folds come from ``StratifiedGroupKFold(n_splits', shuffle=True, random_state)``:
    all rows of one group (capture event) land in the same test fold, and class
    proportions are kept as even as the groups allow. The data must support the folds,
    so ``n_splits' = min(n_splits, number of groups, size of the largest class)``.
    Classes with a single example are allowed; they just cannot be predicted in the
    fold that holds them.

    Args:
        features: (L, d) real, finite features (e.g. embeddings); passed to the
            callables as float32.
        labels: (L,) integer label ids.
        groups: (L,) capture-event id of each row (ints or strings).
        train: ``train(x, y, random_state) -> model``; called once per fold on that
            fold's training rows ((n, d) float32, (n,) int64) with ``random_state``
            unchanged, like ``cross_val_predict`` with a cloned estimator. May be
            given a single class.
        predict_proba: ``predict_proba(model, x) -> (probs, classes)`` with probs
            (n, C_model) non-negative rows summing to 1 and classes (C_model,) integer
            label ids, a subset of ``labels``, in any order.
        n_splits: requested number of folds, >= 2.
        random_state: seed >= 0 for the fold shuffle and for ``train``.

    Returns:
        CrossValidated (see its attributes).

    Raises:
        EvaluationError (a ValueError): shape/dtype mismatch, NaN/inf, fewer than 2
        groups or 2 classes ("need at least ..."), no class with 2 examples, or
        malformed ``predict_proba`` output.
    """
    n_splits = _check_int(n_splits, name="n_splits", minimum=2)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    x = _check_real_array(features, name="features", ndim=2).astype(np.float32)
    y = _check_labels(labels, n_rows=x.shape[0])
    if x.shape[0] == 0:
        raise EvaluationError("cross-validation: need at least 2 capture events (groups), got 0")
    _, group_ids = _factorize(groups, name="groups", n_rows=x.shape[0], other="features")
    used = _effective_splits(n_splits, group_ids=group_ids, labels=y)
    folds = _test_folds(y, group_ids, n_splits=used, random_state=random_state)
    return _predict_out_of_fold(
        x,
        y,
        folds=folds,
        n_splits=used,
        train=train,
        predict_proba=predict_proba,
        random_state=random_state,
    )


def _predict_out_of_fold(
    x: np.ndarray,
    y: np.ndarray,
    *,
    folds: np.ndarray,
    n_splits: int,
    train: TrainFn,
    predict_proba: PredictProbaFn,
    random_state: int,
) -> CrossValidated:
    """Train on all folds but one, predict that one, for every fold in ``folds``."""
    classes = np.unique(y)
    true_columns = np.searchsorted(classes, y)
    probs = np.zeros((y.size, classes.size), dtype=np.float32)
    top5 = np.zeros(y.size, dtype=bool)
    for fold in range(n_splits):
        test = folds == fold
        if not test.any():  # the greedy fold assignment can leave a fold empty
            continue
        model = train(x[~test], y[~test], random_state)
        output = predict_proba(model, x[test])
        fold_probs, known = _fold_probabilities(output, classes=classes, n_rows=int(test.sum()))
        probs[test] = fold_probs
        top5[test] = _top_k_hits(fold_probs, known, true_columns[test])
    best = np.argmax(probs, axis=1)  # first maximum: ties go to the smaller label id
    predicted = classes[best]
    correct = predicted == y
    return CrossValidated(
        classes=classes,
        probabilities=probs,
        predicted=predicted,
        confidence=probs[np.arange(y.size), best],
        correct=correct,
        top5_correct=top5,
        folds=folds,
        accuracy=float(correct.mean()),
        top5_accuracy=float(top5.mean()),
        n_splits=n_splits,
    )


# ------------------------------------------------------------ confidence threshold


@dataclass(frozen=True)
class Threshold:
    """The lowest confidence threshold that still reaches a target accuracy.

    Attributes:
        threshold: the confidence t (one of the given confidences) such that the
            predictions with confidence >= t have accuracy >= ``target``, as low as
            possible; None when no threshold reaches the target.
        target: the requested accuracy, in (0, 1].
        accuracy_at_threshold: accuracy of the predictions with confidence >= t;
            None when ``threshold`` is None.
        coverage: share of the N predictions with confidence >= t (0.0 when None).
        n: number of predictions N the threshold was chosen on.
    """

    threshold: float | None
    target: float
    accuracy_at_threshold: float | None
    coverage: float
    n: int


def accuracy_threshold(confidence: np.ndarray, correct: np.ndarray, *, target: float) -> Threshold:
    """Confidence thresholding (Norouzzadeh et al. 2019): automate only confident images.

    Predictions are sorted by confidence, highest first. For each distinct
    confidence t, the retained set is every prediction with confidence >= t (equal
    confidences always go in together: a threshold cannot split them). The result is
    the LOWEST t whose retained set has accuracy >= ``target``, i.e. the largest
    coverage meeting the target. Accuracy is not monotone in t, so this is not the
    point where accuracy first drops below the target; every t is checked.

    Args:
        confidence: (N,) real, finite confidences (e.g. ``CrossValidated.confidence``),
            N >= 1.
        correct: (N,) bool, whether each prediction was right.
        target: required accuracy in (0, 1].

    Returns:
        Threshold. Apply it to new predictions with ``coverage_at``.

    Raises:
        EvaluationError (a ValueError): empty input, shape/dtype mismatch, NaN/inf,
        target outside (0, 1].
    """
    target = _check_real(target, name="target")
    if not 0.0 < target <= 1.0:
        raise EvaluationError(f"target must be in (0, 1], got {target}")
    conf = _check_real_array(confidence, name="confidence", ndim=1)
    hits = _check_bool(correct, name="correct", n_rows=conf.size, other="confidence")
    if conf.size == 0:
        raise EvaluationError("accuracy_threshold: need at least 1 prediction, got 0")
    levels, retained, right = _cumulative_by_level(conf, hits)
    accuracy = right / retained
    reaching = np.flatnonzero(accuracy >= target)
    if reaching.size == 0:
        return Threshold(
            threshold=None, target=target, accuracy_at_threshold=None, coverage=0.0, n=conf.size
        )
    best = int(reaching[-1])  # levels run high to low: the last hit is the lowest t
    return Threshold(
        threshold=float(levels[best]),
        target=target,
        accuracy_at_threshold=float(accuracy[best]),
        coverage=float(retained[best] / conf.size),
        n=int(conf.size),
    )


def _cumulative_by_level(
    conf: np.ndarray, hits: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct confidences high to low, with cumulative (retained, correct) counts.

    Returns three (K,) arrays: levels, #predictions >= level, #correct among them.
    """
    levels, inverse = np.unique(conf, return_inverse=True)
    inverse = inverse.ravel()
    # Count per level, then reverse so the cumulative sums run from the top level down.
    counts = np.bincount(inverse, minlength=levels.size)[::-1]
    right = np.bincount(inverse, weights=hits.astype(np.float64), minlength=levels.size)[::-1]
    return levels[::-1], np.cumsum(counts), np.cumsum(right)


def coverage_at(confidences: np.ndarray, threshold: float | None) -> float:
    """Share of (N,) ``confidences`` that are >= ``threshold``.

    Returns 0.0 when ``threshold`` is None (no threshold reached the target, so
    nothing is automated) or when N == 0.

    Raises:
        EvaluationError (a ValueError): not 1-D, NaN/inf, non-real threshold.
    """
    conf = _check_real_array(confidences, name="confidences", ndim=1)
    if threshold is None or conf.size == 0:
        return 0.0
    t = _check_real(threshold, name="threshold")
    return float(np.count_nonzero(conf >= t) / conf.size)


# ------------------------------------------------------------------- capture events


@dataclass(frozen=True)
class EventProbabilities:
    """Class probabilities per capture event: the mean over its crops.

    Attributes:
        event_ids: (E,) unique event ids in SORTED order (``np.unique`` order, not
            first appearance), same dtype as the input ids.
        probabilities: (E, C) float32 mean probability vector of each event's crops.
        n_crops: (E,) int64 number of crops per event (each >= 1).
        event_index: (N,) int64 row of ``event_ids`` each input crop belongs to, to map
            event results back to crops.
    """

    event_ids: np.ndarray
    probabilities: np.ndarray
    n_crops: np.ndarray
    event_index: np.ndarray


def event_probabilities(probabilities: np.ndarray, event_ids: np.ndarray) -> EventProbabilities:
    """Average crop probability vectors per capture event (the paper's event rule).

    Vectorised: O(N log N) for the sort in ``np.unique`` plus O(N C) for the sums;
    about a second for N = 10**6, C = 50. Sums are accumulated in float64 so long
    events do not lose precision, and returned as float32.

    Args:
        probabilities: (N, C) real, finite crop probabilities; N may be 0.
        event_ids: (N,) event id of each crop (ints or strings).

    Returns:
        EventProbabilities with events in sorted id order.

    Raises:
        EvaluationError (a ValueError): shape mismatch, NaN/inf, ids numpy cannot sort.
    """
    probs = _check_real_array(probabilities, name="probabilities", ndim=2)
    unique, inverse = _factorize(
        event_ids, name="event_ids", n_rows=probs.shape[0], other="probabilities"
    )
    n_crops = np.bincount(inverse, minlength=unique.size).astype(np.int64)
    sums = np.empty((unique.size, probs.shape[1]), dtype=np.float64)
    # One bincount per class column: faster and lighter than np.add.at on (N, C), and
    # C (species) is small while N (crops) can be millions.
    for column in range(probs.shape[1]):
        sums[:, column] = np.bincount(inverse, weights=probs[:, column], minlength=unique.size)
    means = (sums / n_crops[:, None]).astype(np.float32)  # every event has >= 1 crop
    return EventProbabilities(
        event_ids=unique, probabilities=means, n_crops=n_crops, event_index=inverse
    )


# ------------------------------------------------------------------- learning curve


@dataclass(frozen=True)
class LearningCurve:
    """An inverse power law ``acc(n) = a - b * n**(-c)`` fitted to learning-curve points.

    Everything here is an ESTIMATE: an extrapolation from a few noisy
    cross-validated accuracies, useful to decide whether labelling is still paying
    off, not a guarantee.

    Attributes:
        fitted: whether a curve was fitted; when False every estimate is None.
        reason: why no curve was fitted (None when fitted).
        n_points: number of (labels, accuracy) points given.
        last_n: the largest number of labels among the points.
        min_gain: accuracy gain per 100 labels below which labelling stops paying off.
        params: (a, b, c) of the fit, or None.
        asymptote: a, the accuracy the curve approaches with unlimited labels.
        rmse: root-mean-square residual of the fit on the points.
        gain_per_100: predicted accuracy gain from the next 100 labels after
            ``last_n``: ``acc(last_n + 100) - acc(last_n)``.
        labels_to_plateau: smallest integer n >= 1 with ``acc(n + 100) - acc(n) <
            min_gain``; may be <= ``last_n`` (already on the plateau). None when not
            fitted or when the plateau is beyond 10**7 labels.
    """

    fitted: bool
    reason: str | None
    n_points: int
    last_n: float
    min_gain: float
    params: tuple[float, float, float] | None = None
    asymptote: float | None = None
    rmse: float | None = None
    gain_per_100: float | None = None
    labels_to_plateau: int | None = None

    def predict(self, n: np.ndarray | float) -> np.ndarray:
        """Estimated accuracy after ``n`` labels: float64 array of ``n``'s shape.

        Not clipped: the power law can go below 0 for very small n.

        Raises:
            EvaluationError (a ValueError): no curve was fitted, or n <= 0 / NaN.
        """
        if self.params is None:
            raise EvaluationError(f"no learning curve was fitted: {self.reason}")
        arr = _check_real_array(n, name="n", ndim=np.ndim(n)).astype(np.float64)
        if (arr <= 0).any():
            raise EvaluationError("n must be > 0")
        result: np.ndarray = _power_law(arr, *self.params)
        return result


def _power_law(n: np.ndarray, a: float, b: float, c: float) -> np.ndarray:
    """acc(n) = a - b * n**(-c), elementwise."""
    result: np.ndarray = a - b * np.power(n, -c)
    return result


def _gain(n: float, b: float, c: float) -> float:
    """acc(n + 100) - acc(n) = b * (n**-c - (n + 100)**-c): decreasing in n when b, c > 0."""
    return b * (n ** (-c) - (n + _GAIN_STEP) ** (-c))


def _plateau(b: float, c: float, *, min_gain: float) -> int | None:
    """Smallest integer n >= 1 with gain(n) < min_gain, by bisection (gain decreases)."""
    if _gain(1.0, b, c) < min_gain:
        return 1
    if _gain(float(_PLATEAU_SEARCH_MAX), b, c) >= min_gain:
        return None
    low, high = 1, _PLATEAU_SEARCH_MAX  # invariant: gain(low) >= min_gain > gain(high)
    while high - low > 1:
        middle = (low + high) // 2
        if _gain(float(middle), b, c) < min_gain:
            high = middle
        else:
            low = middle
    return high


def _fit_power_law(n: np.ndarray, acc: np.ndarray) -> tuple[float, float, float] | None:
    """Least-squares (a, b, c) within the bounds, best of several starts; None if all fail."""
    best: tuple[float, float, float] | None = None
    best_sse = math.inf
    a0 = float(min(1.0, acc.max() + 0.01))
    for c0 in _C_STARTS:
        # Start b so the curve passes near the first point: a0 - b0 * n0**-c0 = acc0.
        b0 = max((a0 - float(acc[0])) * float(n[0]) ** c0, 1e-6)
        try:
            with warnings.catch_warnings():
                # An unidentifiable c (b = 0, flat data) makes the covariance
                # infinite; we do not use the covariance.
                warnings.simplefilter("ignore", OptimizeWarning)
                params, _ = curve_fit(
                    _power_law,
                    n,
                    acc,
                    p0=(a0, b0, c0),
                    bounds=((0.0, 0.0, _C_MIN), (1.0, np.inf, _C_MAX)),
                    max_nfev=_CURVE_MAX_EVALS,
                )
        except (RuntimeError, ValueError):  # no convergence / bad numerics at this start
            continue
        sse = float(np.sum((_power_law(n, *params) - acc) ** 2))
        if np.isfinite(params).all() and sse < best_sse:
            best, best_sse = (float(params[0]), float(params[1]), float(params[2])), sse
    return best


def _check_curve_points(n_labels: object, accuracy: object) -> tuple[np.ndarray, np.ndarray]:
    """(P,) float64 label counts > 0 and accuracies in [0, 1], sorted by label count."""
    n = _check_real_array(n_labels, name="n_labels", ndim=1).astype(np.float64)
    acc = _check_real_array(accuracy, name="accuracy", ndim=1).astype(np.float64)
    _check_length(acc, name="accuracy", n_rows=n.size, other="n_labels")
    if (n <= 0).any():
        raise EvaluationError("n_labels must be > 0")
    if ((acc < 0) | (acc > 1)).any():
        raise EvaluationError("accuracy must lie in [0, 1]")
    order = np.argsort(n, kind="stable")
    return n[order], acc[order]


def learning_curve_fit(
    n_labels: npt.ArrayLike, accuracy: npt.ArrayLike, *, min_gain: float = 0.005
) -> LearningCurve:
    """Fit ``acc(n) = a - b * n**(-c)`` to learning-curve points and read off estimates.

    One point per labelling round: the number of labels used and the cross-validated
    accuracy reached. The fit is ``scipy.optimize.curve_fit`` (trust-region
    reflective) with bounds a in [0, 1], b >= 0, c in [0.001, 3], started from
    several exponents; the lowest squared error wins. Deterministic.

    With fewer than 3 distinct label counts (3 parameters) or a failed fit, the result
    has ``fitted=False`` and a ``reason`` instead of raising: too few rounds is a
    normal early state, not an error. Flat or decreasing accuracies fit b = 0, i.e.
    a flat curve at about the mean accuracy: labels are not paying off.

    Args:
        n_labels: (P,) label counts > 0 (any order; sorted here).
        accuracy: (P,) accuracies in [0, 1].
        min_gain: accuracy gain per 100 labels below which more labels stop paying
            off; default 0.005 (half a percentage point per 100 labels).

    Returns:
        LearningCurve (an estimate; see its attributes).

    Raises:
        EvaluationError (a ValueError): shape mismatch, NaN/inf, n <= 0, accuracy
        outside [0, 1], min_gain <= 0.
    """
    min_gain = _check_real(min_gain, name="min_gain")
    if min_gain <= 0:
        raise EvaluationError(f"min_gain must be > 0, got {min_gain}")
    n, acc = _check_curve_points(n_labels, accuracy)
    last_n = float(n[-1]) if n.size else 0.0
    unfitted = LearningCurve(False, None, int(n.size), last_n, min_gain)
    n_distinct = np.unique(n).size
    if n_distinct < 3:
        reason = f"need at least 3 distinct label counts to fit 3 parameters, got {n_distinct}"
        return dataclasses.replace(unfitted, reason=reason)
    params = _fit_power_law(n, acc)
    if params is None:
        return dataclasses.replace(unfitted, reason="the curve fit did not converge")
    a, b, c = params
    return LearningCurve(
        fitted=True,
        reason=None,
        n_points=int(n.size),
        last_n=last_n,
        min_gain=min_gain,
        params=params,
        asymptote=a,
        rmse=float(np.sqrt(np.mean((_power_law(n, a, b, c) - acc) ** 2))),
        gain_per_100=_gain(last_n, b, c),
        labels_to_plateau=_plateau(b, c, min_gain=min_gain),
    )
