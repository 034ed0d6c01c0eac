"""The linear classifier and probability calibration. Django-free.

On a few hundred labels a class-balanced logistic regression on L2-normalised embeddings beats
the paper's (150, 100) MLP (missouri-dev, 3 rotated sequence folds: 0.282 vs 0.251 crop top-1
at 100 labels, 0.344 vs 0.318 at 300; benchmarks/README.md#classifier-choice), and its softer
probabilities pool better over a capture event. Temperature scaling (Guo et al. 2017) fitted on
held-out probabilities makes either model's confidences honest enough to set an auto-accept
threshold on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression

# Inverse regularisation strength: 1 measured best on the mean and the worst of the folds
# (0.3 and 10 measured too).
LOGISTIC_C = 1.0
# Temperatures searched (log-spaced): sharper (< 1) to much softer (> 1).
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@dataclass(frozen=True)
class LogisticModel:
    """``softmax(unit(x) @ coef.T + intercept)``: coef (C, d), intercept (C,) float32."""

    coef: np.ndarray
    intercept: np.ndarray

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """(n, C) float32 probabilities of (n, d) ``x`` (rows normalised first)."""
        logits = _unit_rows(np.asarray(x, dtype=np.float32)) @ self.coef.T + self.intercept
        return _softmax(logits.astype(np.float64)).astype(np.float32)


def logistic_fit(
    features: np.ndarray, labels: np.ndarray, *, c: float = LOGISTIC_C, max_iter: int = 2000
) -> tuple[LogisticModel, bool, int]:
    """Fit a class-balanced multinomial logistic regression on L2-normalised ``features``.

    features (L, d) float32, labels (L,) int64 indices 0..C-1 with at least two distinct values.
    Returns (model, converged, iterations). Deterministic (L-BFGS).
    """
    x = _unit_rows(np.asarray(features, dtype=np.float64))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf = LogisticRegression(C=c, class_weight="balanced", max_iter=max_iter)
        clf.fit(x, labels)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    coef, intercept = clf.coef_, clf.intercept_
    if coef.shape[0] == 1:  # two classes: sklearn keeps one row; softmax needs both
        coef = np.vstack([-coef / 2, coef / 2])
        intercept = np.array([-intercept[0] / 2, intercept[0] / 2])
    model = LogisticModel(coef.astype(np.float32), intercept.astype(np.float32))
    return model, converged, int(np.max(clf.n_iter_))


def temper(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log p / T)`` row by row: T > 1 softens, T < 1 sharpens; T = 1 is identity."""
    p = np.asarray(probabilities, dtype=np.float64)
    if temperature == 1.0:
        return p.astype(np.float32)
    logits = np.log(np.clip(p, 1e-12, 1.0)) / temperature
    return _softmax(logits).astype(np.float32)


def temperature_fit(probabilities: np.ndarray, true_columns: np.ndarray) -> float:
    """The temperature that minimises the log loss of held-out ``probabilities`` (n, C).

    ``true_columns`` (n,) is each row's true class column, or -1 for a class the model never
    saw (such rows count as wrong at any temperature and are left out of the fit). Returns 1.0
    when fewer than 10 rows are usable.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    cols = np.asarray(true_columns, dtype=np.int64)
    keep = cols >= 0
    if keep.sum() < 10:
        return 1.0
    log_p = np.log(np.clip(p[keep], 1e-12, 1.0))
    rows = np.arange(int(keep.sum()))
    best, best_loss = 1.0, np.inf
    for t in _TEMPERATURES:
        z = log_p / t
        z -= z.max(axis=1, keepdims=True)
        loss = float(-(z[rows, cols[keep]] - np.log(np.exp(z).sum(axis=1))).mean())
        if loss < best_loss - 1e-12:
            best, best_loss = float(t), loss
    return best
