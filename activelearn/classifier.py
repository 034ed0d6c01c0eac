"""The species classifier trained on embeddings of labelled images.

As in Norouzzadeh et al. (2019), a small multi-layer perceptron (hidden layers
(150, 100), scikit-learn ``MLPClassifier``) is trained on top of fixed embeddings
after each labelling round, then used to predict labels for every image.

Arrays in, dataclasses out; no Django. Persistence uses joblib (pickle): only load
files this application wrote itself.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier

from activelearn._checks import check_int

__all__ = [
    "ClassifierError",
    "Predictions",
    "TrainedClassifier",
    "classifier_load",
    "classifier_predict",
    "classifier_save",
    "classifier_train",
]

logger = logging.getLogger(__name__)

# Tag and version of the saved payload, so a wrong or future file fails clearly.
_FILE_FORMAT = "trapwise-classifier"
_FILE_VERSION = 1


class ClassifierError(ValueError):
    """Raised for invalid classifier input or an unreadable/foreign saved file."""


@dataclass
class TrainedClassifier:
    """A trained classifier plus what is needed to use and describe it.

    Attributes:
        model: the fitted ``MLPClassifier``, or None in the degenerate single-class
            case: when all training labels are equal there is nothing to learn, and
            prediction returns that one class with probability 1.0 for every row.
        classes: (C,) int64 sorted label ids; column order of the probabilities.
        n_train: number of training rows L.
        random_state: seed used for weight init and minibatch shuffling.
        hidden_layer_sizes: MLP hidden layer widths.
        n_features: embedding width d expected by ``classifier_predict``.
        converged: False if the optimiser hit ``max_iter`` before converging (the
            model is still usable, just possibly under-trained). True for single-class.
        n_iter: optimiser epochs actually run (0 for single-class).
    """

    model: Any
    classes: np.ndarray
    n_train: int
    random_state: int
    hidden_layer_sizes: tuple[int, ...]
    n_features: int
    converged: bool = True
    n_iter: int = 0


@dataclass(frozen=True)
class Predictions:
    """Top-k predictions for N rows, best first.

    Attributes:
        top_labels: (N, k) int64 label ids, sorted by decreasing probability (ties go
            to the smaller label id).
        top_probs: (N, k) float32 matching probabilities; each row sums to <= 1.
    """

    top_labels: np.ndarray
    top_probs: np.ndarray

    @property
    def label(self) -> np.ndarray:
        """(N,) int64 most probable label id per row."""
        return self.top_labels[:, 0]

    @property
    def confidence(self) -> np.ndarray:
        """(N,) float32 probability of the most probable label per row."""
        return self.top_probs[:, 0]


def _check_int(value: object, *, name: str, minimum: int) -> int:
    return check_int(value, name=name, minimum=minimum, error=ClassifierError)


def _check_features(features: object, *, name: str = "features") -> np.ndarray:
    """Return features as a finite float32 (N, d) array or raise ClassifierError."""
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise ClassifierError(f"{name} must be 2-D (N, d), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ClassifierError(f"{name} must be real numbers, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ClassifierError(f"{name} contain NaN or infinite values")
    return arr


def _check_labels(labels: object, *, n_rows: int) -> np.ndarray:
    """Return labels as a (n_rows,) int64 array or raise ClassifierError."""
    arr = np.asarray(labels)
    if arr.ndim != 1 or arr.shape[0] != n_rows:
        raise ClassifierError(
            f"labels must have shape ({n_rows},) to match features, got {arr.shape}"
        )
    # Bool and float labels are rejected: label ids are database integers.
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise ClassifierError(f"labels must be integer label ids, got dtype {arr.dtype}")
    return arr.astype(np.int64)


def _check_hidden(hidden_layer_sizes: object) -> tuple[int, ...]:
    """Return hidden layer sizes as a non-empty tuple of positive ints."""
    if not isinstance(hidden_layer_sizes, tuple) or not hidden_layer_sizes:
        raise ClassifierError(
            f"hidden_layer_sizes must be a non-empty tuple, got {hidden_layer_sizes!r}"
        )
    return tuple(_check_int(h, name="hidden layer size", minimum=1) for h in hidden_layer_sizes)


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    random_state: int,
    hidden_layer_sizes: tuple[int, ...],
    max_iter: int,
) -> tuple[MLPClassifier, bool]:
    """Fit an MLPClassifier; return (model, converged).

    Non-convergence is an expected outcome with small label sets and a fixed
    max_iter, so the ConvergenceWarning is captured and reported, not raised.
    """
    # early_stopping would hold out 10% of an already tiny label set, and its
    # stratified split fails when a class has a single example.
    model = MLPClassifier(
        hidden_layer_sizes=hidden_layer_sizes,
        max_iter=max_iter,
        random_state=random_state,
        early_stopping=False,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(x, y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not converged:
        logger.warning("MLP did not converge in %d iterations on %d rows", max_iter, x.shape[0])
    return model, converged


def classifier_train(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    random_state: int,
    hidden_layer_sizes: tuple[int, ...] = (150, 100),
    max_iter: int = 200,
) -> TrainedClassifier:
    """Train the MLP on labelled embeddings.

    Args:
        features: (L, d) embeddings of the labelled rows (converted to float32), L >= 1.
        labels: (L,) integer label ids.
        random_state: seed >= 0 for weight init and shuffling (deterministic).
        hidden_layer_sizes: hidden layer widths; the paper uses (150, 100).
        max_iter: maximum optimiser epochs (adam).

    Returns:
        TrainedClassifier; ``model`` is None if only one distinct label was given.
        If training stops at ``max_iter`` the result has ``converged=False`` and a
        warning is logged (no exception).

    Raises:
        ClassifierError (a ValueError): empty input, shape/dtype mismatch, NaN/inf.
    """
    random_state = _check_int(random_state, name="random_state", minimum=0)
    max_iter = _check_int(max_iter, name="max_iter", minimum=1)
    hidden = _check_hidden(hidden_layer_sizes)
    x = _check_features(features)
    if x.shape[0] == 0:
        raise ClassifierError("cannot train a classifier on zero labelled rows")
    y = _check_labels(labels, n_rows=x.shape[0])
    classes = np.unique(y)
    model: MLPClassifier | None = None
    converged, n_iter = True, 0
    if classes.size > 1:
        model, converged = _fit_mlp(
            x, y, random_state=random_state, hidden_layer_sizes=hidden, max_iter=max_iter
        )
        n_iter = int(model.n_iter_)
    return TrainedClassifier(
        model=model,
        classes=classes,
        n_train=int(x.shape[0]),
        random_state=random_state,
        hidden_layer_sizes=hidden,
        n_features=int(x.shape[1]),
        converged=converged,
        n_iter=n_iter,
    )


def _top_k(probs: np.ndarray, *, classes: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of (n, C) probabilities -> ((n, k) int64 labels, (n, k) float32 probs)."""
    # Stable sort of -p: equal probabilities keep class order (smaller id first).
    order = np.argsort(-probs, axis=1, kind="stable")[:, :k]
    return classes[order].astype(np.int64), np.take_along_axis(probs, order, axis=1).astype(
        np.float32
    )


def classifier_predict(
    clf: TrainedClassifier,
    features: np.ndarray,
    *,
    top_k: int = 5,
    batch_size: int = 65536,
) -> Predictions:
    """Predict the top-k labels for each row of ``features``.

    Args:
        clf: a trained classifier.
        features: (N, d) embeddings with d == clf.n_features; N may be 0.
        top_k: number of labels per row; k = min(top_k, C).
        batch_size: rows per predict_proba call (bounds memory).

    Returns:
        Predictions with (N, k) ``top_labels`` (int64) and ``top_probs`` (float32).
        Single-class classifier: k = 1, every row gets that class with 1.0.

    Raises:
        ClassifierError (a ValueError): wrong width, NaN/inf, top_k or batch_size < 1.
    """
    top_k = _check_int(top_k, name="top_k", minimum=1)
    batch_size = _check_int(batch_size, name="batch_size", minimum=1)
    x = _check_features(features)
    if x.shape[1] != clf.n_features:
        raise ClassifierError(
            f"features have width {x.shape[1]}, the classifier expects {clf.n_features}"
        )
    classes = np.asarray(clf.classes, dtype=np.int64)
    k = min(top_k, classes.size)
    labels = np.empty((x.shape[0], k), dtype=np.int64)
    probs = np.empty((x.shape[0], k), dtype=np.float32)
    if clf.model is None:
        labels[:] = classes[0]
        probs[:] = 1.0
        return Predictions(top_labels=labels, top_probs=probs)
    for start in range(0, x.shape[0], batch_size):
        stop = start + batch_size
        batch_probs = clf.model.predict_proba(x[start:stop])
        labels[start:stop], probs[start:stop] = _top_k(batch_probs, classes=classes, k=k)
    return Predictions(top_labels=labels, top_probs=probs)


def classifier_save(clf: TrainedClassifier, path: Path) -> None:
    """Write ``clf`` to ``path`` with joblib, atomically.

    The payload is written to a temporary file in the same folder, flushed to disk,
    then moved over ``path`` with os.replace, so readers never see a half-written
    file. The parent folder must exist.
    """
    path = Path(path)
    payload = {
        "format": _FILE_FORMAT,
        "version": _FILE_VERSION,
        "sklearn_version": sklearn.__version__,
        "classifier": clf,
    }
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            joblib.dump(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def classifier_load(path: Path) -> TrainedClassifier:
    """Read a classifier written by ``classifier_save``.

    Only load trusted files: joblib unpickles arbitrary objects.

    Raises:
        FileNotFoundError: no file at ``path``.
        ClassifierError (a ValueError): the file is not a Trapwise classifier or has
        an unsupported payload version.
    """
    path = Path(path)
    try:
        payload = joblib.load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # joblib/pickle raise many types for a corrupt file
        raise ClassifierError(f"{path} is not a readable classifier file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != _FILE_FORMAT:
        raise ClassifierError(f"{path} is not a Trapwise classifier file")
    if payload.get("version") != _FILE_VERSION:
        raise ClassifierError(
            f"{path} has classifier file version {payload.get('version')!r}; "
            f"this code reads version {_FILE_VERSION}"
        )
    clf = payload["classifier"]
    if not isinstance(clf, TrainedClassifier):
        raise ClassifierError(f"{path} does not contain a TrainedClassifier")
    if payload.get("sklearn_version") != sklearn.__version__:
        logger.warning(
            "%s was saved with scikit-learn %s, running %s",
            path,
            payload.get("sklearn_version"),
            sklearn.__version__,
        )
    return clf
