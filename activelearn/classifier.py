"""The species classifier trained on embeddings of labelled images.

As in Norouzzadeh et al. (2019), a small multi-layer perceptron (hidden layers
(150, 100), ReLU, Adam) is trained on top of fixed embeddings after each labelling
round, then used to predict labels for every image. The paper's code uses
scikit-learn's ``MLPClassifier``; the default backend here is the same network and
stopping rule in PyTorch, which trains several times faster on two cores (see
``make bench``, ``classifier_loop``). ``backend="sklearn"`` keeps the original.

Arrays in, dataclasses out; no Django. Persistence uses joblib (pickle): only load
files this application wrote itself.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any, TypeVar

import joblib
import numpy as np
import sklearn
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.utils.class_weight import compute_class_weight

from activelearn._checks import check_int
from activelearn.linear import logistic_fit, temper
from embeddings.inference import torch_threads
from projects.atomic import atomic_path

__all__ = [
    "CLASS_BALANCES",
    "ClassifierError",
    "Predictions",
    "TrainedClassifier",
    "BACKENDS",
    "classifier_load",
    "classifier_predict",
    "classifier_probabilities",
    "classifier_save",
    "classifier_train",
    "class_weights",
    "ensemble_member_path",
    "ensemble_predict_proba",
    "ensemble_save",
    "ensemble_train",
    "oversample_rows",
    "probabilities_average",
    "probabilities_top_k",
]

logger = logging.getLogger(__name__)

PathT = TypeVar("PathT", bound=PurePath)

# Tag and version of the saved payload, so a wrong or future file fails clearly.
_FILE_FORMAT = "trapwise-classifier"
_FILE_VERSION = 1

BACKENDS = ("torch", "sklearn", "logistic")
# Rare species (the preprint): "none"; "weighted" = loss weights f_i = N / (C n_i)
# (class_weights); "oversample" = minority classes resampled to the majority's count.
CLASS_BALANCES = ("none", "weighted", "oversample")

# scikit-learn MLPClassifier defaults, kept so that both backends train the same network.
_BATCH_SIZE = 200
_LEARNING_RATE = 1e-3
_ALPHA = 1e-4
_TOL = 1e-4
_N_ITER_NO_CHANGE = 10
# From this many labelled rows on, training stops on a held-out 10% (see _fit_torch).
_VALIDATION_MIN_ROWS = 2000


class ClassifierError(ValueError):
    """Raised for invalid classifier input or an unreadable/foreign saved file."""


@dataclass
class TrainedClassifier:
    """A trained classifier plus what is needed to use and describe it.

    Attributes:
        model: the fitted network: ``MLPWeights`` (torch backend), an ``MLPClassifier``
            (sklearn backend) or a ``linear.LogisticModel`` (logistic backend: class-balanced
            logistic regression on L2-normalised inputs), or None in the degenerate single-class
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
        temperature: probabilities are ``linear.temper``-ed by it (fitted on held-out
            predictions by the retrain; 1.0 leaves them as the model gives them).
    """

    model: Any
    classes: np.ndarray
    n_train: int
    random_state: int
    hidden_layer_sizes: tuple[int, ...]
    n_features: int
    converged: bool = True
    n_iter: int = 0
    backend: str = "sklearn"
    class_balance: str = "none"
    temperature: float = 1.0

    @property
    def algorithm(self) -> str:
        """Human-readable description, stored with each classifier version."""
        if self.backend == "logistic":
            return "logistic regression (class-balanced, L2-normalised inputs)"
        layers = ", ".join(str(h) for h in self.hidden_layer_sizes)
        name = "PyTorch MLP" if self.backend == "torch" else "sklearn MLPClassifier"
        return f"{name} ({layers})"


@dataclass(frozen=True)
class MLPWeights:
    """A trained ReLU MLP as plain arrays (no torch objects in the saved file).

    Attributes:
        weights: per layer, a (fan_in, fan_out) float32 matrix; the last maps to C classes.
        biases: per layer, a (fan_out,) float32 vector.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, C) float32 softmax probabilities of (n, d) float32 ``x``."""
        h = x
        last = len(self.weights) - 1
        for i, (w, b) in enumerate(zip(self.weights, self.biases, strict=True)):
            h = h @ w
            h += b
            if i < last:
                np.maximum(h, 0.0, out=h)
        h -= h.max(axis=1, keepdims=True)
        np.exp(h, out=h)
        h /= h.sum(axis=1, keepdims=True)
        return h


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


# Rows checked for finiteness at a time: the check's boolean temporary stays ~16 MB for
# d = 256 instead of N x d (2.56 GB at 10M crops).
_CHECK_ROWS = 65536


def _check_features(features: object, *, name: str = "features") -> np.ndarray:
    """Return features as a finite float32 (N, d) array or raise ClassifierError.

    A float32 array (a memory map included) is returned as it is, not copied; the
    finiteness check reads it in blocks of ``_CHECK_ROWS`` rows.
    """
    arr = features if isinstance(features, np.ndarray) else np.asarray(features)
    if arr.ndim != 2:
        raise ClassifierError(f"{name} must be 2-D (N, d), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ClassifierError(f"{name} must be real numbers, got dtype {arr.dtype}")
    if arr.dtype != np.float32:
        arr = np.asarray(arr, dtype=np.float32)
    for start in range(0, arr.shape[0], _CHECK_ROWS):
        if not np.isfinite(arr[start : start + _CHECK_ROWS]).all():
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


def class_weights(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-class loss weights against imbalance: ((C,) sorted classes, (C,) float64 weights).

    The preprint's f_i = N / n_i (N rows, n_i rows of class i), normalised so that the
    weights average 1 over the rows (sum_i n_i f_i = N): f_i = N / (C n_i) with C classes.
    This is scikit-learn's ``class_weight="balanced"``, which computes it.
    """
    y = np.asarray(labels).reshape(-1)
    if y.size == 0:
        raise ClassifierError("class weights need at least one label")
    classes = np.unique(y)
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return classes, np.asarray(weights, dtype=np.float64)


def oversample_rows(labels: np.ndarray, *, random_state: int) -> np.ndarray:
    """Rows to train on so that every class has as many as the largest one (sorted, int64).

    Every row is kept once; each smaller class gets ``max count - its count`` more of its
    own rows, drawn uniformly with replacement (seeded). A balanced input comes back as is.
    """
    y = np.asarray(labels).reshape(-1)
    classes, counts = np.unique(y, return_counts=True)
    rng = np.random.default_rng(random_state)
    extra = [
        rng.choice(np.flatnonzero(y == label), size=int(counts.max() - count), replace=True)
        for label, count in zip(classes, counts, strict=True)
        if count < counts.max()
    ]
    rows = np.concatenate([np.arange(y.size), *extra]) if extra else np.arange(y.size)
    return np.sort(rows).astype(np.int64)


def _check_class_balance(class_balance: object) -> str:
    if class_balance not in CLASS_BALANCES:
        raise ClassifierError(
            f"unknown class_balance {class_balance!r}; choose one of {', '.join(CLASS_BALANCES)}"
        )
    return str(class_balance)


def _fit_mlp(
    x: np.ndarray,
    y: np.ndarray,
    *,
    random_state: int,
    hidden_layer_sizes: tuple[int, ...],
    max_iter: int,
    class_balance: str = "none",
) -> tuple[MLPClassifier, bool]:
    """Fit an MLPClassifier; return (model, converged).

    Non-convergence is an expected outcome with small label sets and a fixed
    max_iter, so the ConvergenceWarning is captured and reported, not raised.
    "weighted" passes f_i of each row as ``sample_weight`` (scikit-learn >= 1.7);
    "oversample" fits on ``oversample_rows``.
    """
    sample_weight = None
    if class_balance == "weighted":
        classes, weights = class_weights(y)
        sample_weight = weights[np.searchsorted(classes, y)]
    elif class_balance == "oversample":
        rows = oversample_rows(y, random_state=random_state)
        x, y = x[rows], y[rows]
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
        model.fit(x, y, sample_weight=sample_weight)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    for w in caught:
        if not issubclass(w.category, ConvergenceWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if not converged:
        logger.warning("MLP did not converge in %d iterations on %d rows", max_iter, x.shape[0])
    return model, converged


def _torch_network(d: int, hidden: tuple[int, ...], n_classes: int) -> torch.nn.Sequential:
    """ReLU MLP d -> hidden... -> n_classes, Glorot-uniform init as scikit-learn's."""
    layers: list[torch.nn.Module] = []
    widths = (d, *hidden)
    for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(widths[-1], n_classes))
    for layer in layers:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.xavier_uniform_(layer.weight)
            torch.nn.init.zeros_(layer.bias)
    return torch.nn.Sequential(*layers)


def _fit_torch(
    x: np.ndarray,
    y_index: np.ndarray,
    *,
    n_classes: int,
    random_state: int,
    hidden_layer_sizes: tuple[int, ...],
    max_iter: int,
    class_balance: str = "none",
) -> tuple[MLPWeights, bool, int]:
    """Train the MLP with Adam on minibatches; return (weights, converged, epochs).

    Class balance: "weighted" gives the cross-entropy the per-class weights f_i
    (``class_weights``, computed on all rows), for training and held-out loss alike;
    "oversample" resamples the training rows only (``oversample_rows``), after the
    held-out split, so that no copy of a held-out row is trained on.

    Stopping: with fewer than ``_VALIDATION_MIN_ROWS`` rows, scikit-learn's default rule (the
    epoch's training loss has not improved by ``_TOL`` for ``_N_ITER_NO_CHANGE`` epochs).
    With more, a seeded 10% of the rows is held out and training stops when their loss has
    not improved for ``_N_ITER_NO_CHANGE`` epochs, keeping the best epoch's weights
    (scikit-learn's ``early_stopping``): on thousands of noisy labels the training loss keeps
    falling for hundreds of epochs of memorising, which costs time and accuracy.
    """
    generator = torch.Generator().manual_seed(random_state)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(random_state)
        net = _torch_network(x.shape[1], hidden_layer_sizes, n_classes)
    train_rows, val_rows = _validation_split(x.shape[0], random_state=random_state)
    weight = None
    if class_balance == "weighted":
        # Every class occurs in y_index (0..C-1), so the weights line up with the columns.
        weight = torch.from_numpy(class_weights(y_index)[1].astype(np.float32))
    elif class_balance == "oversample":
        train_rows = train_rows[oversample_rows(y_index[train_rows], random_state=random_state)]
    batch = min(_BATCH_SIZE, train_rows.size)
    # sklearn's L2 term is alpha / 2 * ||W||^2 / batch size per step.
    optimizer = torch.optim.Adam(net.parameters(), lr=_LEARNING_RATE, weight_decay=_ALPHA / batch)
    xt, yt = torch.from_numpy(x[train_rows]), torch.from_numpy(y_index[train_rows])
    xv, yv = torch.from_numpy(x[val_rows]), torch.from_numpy(y_index[val_rows])
    best, stale, epochs, best_state = np.inf, 0, 0, None
    # Small matrices: one thread avoids synchronisation costs that dominate each step.
    with torch_threads(1):
        while epochs < max_iter and stale < _N_ITER_NO_CHANGE:
            loss = _torch_epoch(
                net, optimizer, xt, yt, batch=batch, generator=generator, weight=weight
            )
            epochs += 1
            if val_rows.size:
                with torch.no_grad():
                    loss = float(torch.nn.functional.cross_entropy(net(xv), yv, weight=weight))
            if loss < best - _TOL:
                best, stale = loss, 0
                best_state = {k: v.clone() for k, v in net.state_dict().items()}
            else:
                stale += 1
    if val_rows.size and best_state is not None:
        net.load_state_dict(best_state)
    return _weights(net), stale >= _N_ITER_NO_CHANGE, epochs


def _validation_split(n_rows: int, *, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """(training rows, held-out rows): 10% held out from ``_VALIDATION_MIN_ROWS`` rows on."""
    rows = np.arange(n_rows)
    if n_rows < _VALIDATION_MIN_ROWS:
        return rows, rows[:0]
    order = np.random.default_rng(random_state).permutation(n_rows)
    n_val = n_rows // 10
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def _weights(net: torch.nn.Sequential) -> MLPWeights:
    linears = [m for m in net if isinstance(m, torch.nn.Linear)]
    return MLPWeights(
        weights=tuple(m.weight.detach().T.contiguous().numpy().copy() for m in linears),
        biases=tuple(m.bias.detach().numpy().copy() for m in linears),
    )


def _torch_epoch(
    net: torch.nn.Sequential,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch: int,
    generator: torch.Generator,
    weight: torch.Tensor | None = None,
) -> float:
    """One shuffled pass; returns the mean training loss over rows.

    ``weight``: (C,) per-class cross-entropy weights; each batch's loss is then the
    weighted mean (PyTorch divides by the batch's summed weights).
    """
    order = torch.randperm(x.shape[0], generator=generator)
    total = 0.0
    for start in range(0, x.shape[0], batch):
        rows = order[start : start + batch]
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(net(x[rows]), y[rows], weight=weight)
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * rows.numel()
    return total / x.shape[0]


def classifier_train(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    random_state: int,
    hidden_layer_sizes: tuple[int, ...] = (150, 100),
    max_iter: int = 200,
    backend: str = "torch",
    class_balance: str = "none",
) -> TrainedClassifier:
    """Train the MLP on labelled embeddings.

    Args:
        features: (L, d) embeddings of the labelled rows (converted to float32), L >= 1.
        labels: (L,) integer label ids.
        random_state: seed >= 0 for weight init and shuffling (deterministic).
        hidden_layer_sizes: hidden layer widths; the paper uses (150, 100).
        max_iter: maximum optimiser epochs (adam).
        backend: "torch" (default), "sklearn" (the paper's ``MLPClassifier``) or "logistic"
            (``linear.logistic_fit``: always class-balanced; ``hidden_layer_sizes``,
            ``max_iter`` and ``class_balance`` do not apply to it).
        class_balance: against rare species (the preprint): "none" (default); "weighted":
            cross-entropy weighted per class by f_i = N / (C n_i) (``class_weights``: the
            preprint's N / n_i normalised to average 1 over the rows; sklearn backend:
            as ``sample_weight``); "oversample": every smaller class resampled with
            replacement (seeded by ``random_state``) up to the largest class's count
            (``oversample_rows``).

    Returns:
        TrainedClassifier; ``model`` is None if only one distinct label was given.
        If training stops at ``max_iter`` the result has ``converged=False`` and a
        warning is logged (no exception).

    Raises:
        ClassifierError (a ValueError): empty input, shape/dtype mismatch, NaN/inf,
        unknown backend or class_balance.
    """
    random_state = _check_int(random_state, name="random_state", minimum=0)
    max_iter = _check_int(max_iter, name="max_iter", minimum=1)
    hidden = _check_hidden(hidden_layer_sizes)
    if backend not in BACKENDS:
        raise ClassifierError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    class_balance = _check_class_balance(class_balance)
    x = _check_features(features)
    if x.shape[0] == 0:
        raise ClassifierError("cannot train a classifier on zero labelled rows")
    y = _check_labels(labels, n_rows=x.shape[0])
    classes = np.unique(y)
    model: Any = None
    converged, n_iter = True, 0
    if classes.size > 1 and backend == "torch":
        model, converged, n_iter = _fit_torch(
            np.ascontiguousarray(x),
            np.searchsorted(classes, y),
            n_classes=int(classes.size),
            random_state=random_state,
            hidden_layer_sizes=hidden,
            max_iter=max_iter,
            class_balance=class_balance,
        )
        if not converged:
            logger.warning("MLP did not converge in %d epochs on %d rows", max_iter, x.shape[0])
    elif classes.size > 1 and backend == "logistic":
        model, converged, n_iter = logistic_fit(x, np.searchsorted(classes, y))
    elif classes.size > 1:
        model, converged = _fit_mlp(
            x,
            y,
            random_state=random_state,
            hidden_layer_sizes=hidden,
            max_iter=max_iter,
            class_balance=class_balance,
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
        backend=backend,
        class_balance=class_balance,
    )


def probabilities_top_k(
    probs: np.ndarray, *, classes: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of (n, C) probabilities -> ((n, k) int64 labels, (n, k) float32 probs).

    Works through ``_CHECK_ROWS`` rows at a time, so the sort's (rows, C) temporaries stay
    small beside the output at ten million crops."""
    probs = np.asarray(probs)
    classes = np.asarray(classes)
    k = min(k, probs.shape[1]) if probs.ndim == 2 else k
    labels = np.empty((probs.shape[0], k), dtype=np.int64)
    top = np.empty((probs.shape[0], k), dtype=np.float32)
    for start in range(0, probs.shape[0], _CHECK_ROWS):
        block = probs[start : start + _CHECK_ROWS]
        # Stable sort of -p: equal probabilities keep class order (smaller id first).
        order = np.argsort(-block, axis=1, kind="stable")[:, :k]
        labels[start : start + _CHECK_ROWS] = classes[order]
        top[start : start + _CHECK_ROWS] = np.take_along_axis(block, order, axis=1)
    return labels, top


def probabilities_average(
    probabilities: Sequence[np.ndarray], classes: Sequence[np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """Average M models' class probabilities over the union of their classes (an ensemble).

    The preprint (Norouzzadeh et al., S.2) averages several models' probabilities. Models
    trained on different label sets know different classes: a class a model never saw
    gets probability 0 from it, so each averaged row still sums to 1.

    Args:
        probabilities: M arrays, model m's (N, C_m) probabilities of the same N rows,
            columns in the order of ``classes[m]``.
        classes: M arrays, model m's (C_m,) distinct class labels.

    Returns:
        ((N, C) float32 mean probabilities, (C,) int64 sorted union of the classes).

    Raises:
        ClassifierError: no model, a count or shape mismatch, or repeated classes.
    """
    if len(probabilities) == 0 or len(probabilities) != len(classes):
        raise ClassifierError(
            f"need one class list per probability array and at least one of each, got "
            f"{len(probabilities)} arrays and {len(classes)} class lists"
        )
    cols = [np.asarray(c, dtype=np.int64).reshape(-1) for c in classes]
    union = np.unique(np.concatenate(cols))
    n_rows = np.asarray(probabilities[0]).shape[0]
    total = np.zeros((n_rows, union.size), dtype=np.float64)
    for m, (probs, labels) in enumerate(zip(probabilities, cols, strict=True)):
        p = np.asarray(probs, dtype=np.float64)
        if p.shape != (n_rows, labels.size):
            raise ClassifierError(
                f"model {m}: probabilities of shape {p.shape}, expected ({n_rows}, {labels.size})"
            )
        if np.unique(labels).size != labels.size:
            raise ClassifierError(f"model {m}: classes must be distinct")
        total[:, np.searchsorted(union, labels)] += p
    return (total / len(probabilities)).astype(np.float32), union


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
        batch_probs = temper(clf.model.predict_proba(x[start:stop]), clf.temperature)
        labels[start:stop], probs[start:stop] = probabilities_top_k(
            batch_probs, classes=classes, k=k
        )
    return Predictions(top_labels=labels, top_probs=probs)


def classifier_probabilities(
    clf: TrainedClassifier, features: np.ndarray, *, batch_size: int = 65536
) -> np.ndarray:
    """(N, C) float32 class probabilities of (N, d) ``features``; columns follow ``clf.classes``.

    Raises ClassifierError as ``classifier_predict``. A single-class classifier gives a
    column of ones.
    """
    batch_size = _check_int(batch_size, name="batch_size", minimum=1)
    x = _check_features(features)
    if x.shape[1] != clf.n_features:
        raise ClassifierError(
            f"features have width {x.shape[1]}, the classifier expects {clf.n_features}"
        )
    out = np.ones((x.shape[0], len(clf.classes)), dtype=np.float32)
    if clf.model is None:
        return out
    for start in range(0, x.shape[0], batch_size):
        out[start : start + batch_size] = temper(
            clf.model.predict_proba(x[start : start + batch_size]), clf.temperature
        )
    return out


def ensemble_train(
    features: np.ndarray,
    labels: np.ndarray,
    *,
    random_state: int,
    class_balance: str = "none",
    size: int = 1,
    backend: str = "torch",
) -> list[TrainedClassifier]:
    """The project's classifier: ``size`` MLPs trained on the same rows (``classifier_train``).

    Member k gets seed ``(random_state + k) % 2**31`` (so member 0 is exactly
    ``classifier_train(..., random_state=random_state)``), all with ``class_balance``. More
    than one member is an ensemble whose probabilities are averaged (``ensemble_predict_proba``;
    the preprint's S.2). ``size`` below 1 trains one member. The first member is the
    classifier whose settings a retrain reports. The logistic ``backend`` is deterministic, so
    it trains one member whatever ``size`` says.
    """
    members = 1 if backend == "logistic" else max(1, size)
    return [
        classifier_train(
            features,
            labels,
            random_state=(random_state + k) % 2**31,
            class_balance=class_balance,
            backend=backend,
        )
        for k in range(members)
    ]


def ensemble_predict_proba(
    members: Sequence[TrainedClassifier], features: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """((N, C) float32 probabilities averaged over ``members``, (C,) int64 classes).

    One member: its own ``classifier_probabilities`` and classes, untouched. Several:
    ``probabilities_average`` over the union of their classes (a class a member never saw
    counts as 0 from it). Raises ClassifierError as ``classifier_probabilities``, or for no
    member at all.
    """
    if len(members) == 1:
        return classifier_probabilities(members[0], features), members[0].classes
    return probabilities_average(
        [classifier_probabilities(m, features) for m in members], [m.classes for m in members]
    )


def ensemble_save(members: Sequence[TrainedClassifier], path: Path) -> None:
    """The first member at ``path`` (``classifier_save``), member k >= 1 beside it as
    ``<stem>.m<k><suffix>``; each file is written atomically. The parent folder must exist."""
    path = Path(path)
    for k, member in enumerate(members):
        classifier_save(member, ensemble_member_path(path, k))


def ensemble_member_path(path: PathT, k: int) -> PathT:
    """Where ``ensemble_save`` puts member ``k`` of the ensemble saved at ``path``: ``path``
    itself for k = 0, ``<stem>.m<k><suffix>`` beside it for k >= 1 (any ``PurePath``)."""
    if k < 0:
        raise ValueError(f"ensemble member index must be >= 0, got {k}")
    return path if k == 0 else path.with_name(f"{path.stem}.m{k}{path.suffix}")


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
    joblib_dump_atomic(payload, path)


def joblib_dump_atomic(payload: object, path: Path) -> None:
    """Write ``payload`` with joblib to ``path`` atomically (``projects.atomic.atomic_path``:
    temporary file, fsync, rename), so a reader (or a worker killed mid-write) never sees a
    half-written model under ``path``."""
    with atomic_path(Path(path)) as tmp, open(tmp, "wb") as handle:
        joblib.dump(payload, handle)  # a handle: no compression guessed from the name


def joblib_load_checked(
    path: Path, *, file_format: str, what: str, error: type[ValueError]
) -> dict[str, Any]:
    """The payload dict that ``joblib_dump_atomic`` wrote with ``"format": file_format``.

    Raises FileNotFoundError for a missing file, and ``error`` naming ``what`` for a file that
    cannot be unpickled or holds another format. Only load trusted files: joblib unpickles
    arbitrary objects.
    """
    try:
        payload = joblib.load(path)
    except FileNotFoundError:
        raise
    except Exception as exc:  # joblib/pickle raise many types for a corrupt file
        raise error(f"{path} is not a readable {what}: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise error(f"{path} is not a Trapwise {what}")
    return payload


def classifier_load(path: Path) -> TrainedClassifier:
    """Read a classifier written by ``classifier_save``.

    Only load trusted files: joblib unpickles arbitrary objects.

    Raises:
        FileNotFoundError: no file at ``path``.
        ClassifierError (a ValueError): the file is not a Trapwise classifier or has
        an unsupported payload version.
    """
    path = Path(path)
    payload = joblib_load_checked(
        path, file_format=_FILE_FORMAT, what="classifier file", error=ClassifierError
    )
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
