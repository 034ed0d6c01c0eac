"""Unbiased accuracy estimates from the audit stream. Django-free.

A share of every round is drawn uniformly at random from the unlabelled crops and labelled like
any other crop, but shown without machine suggestions. Each such audit label tells whether the
machine label that was live when the crop was offered is right: an unbiased sample of the
machine's accuracy on the crops nobody labels. Two intervals for that accuracy:

* ``binomial_interval``: the audit labels alone (Wilson score interval). Honest but wide:
  thirty audit labels give about +-17 points.
* ``ppi_interval``: prediction-powered inference (Angelopoulos et al., Science 2023; the tuned
  "PPI++" form, Angelopoulos, Duchi and Zrnic 2023). The classifier's confidence on every
  unlabelled crop predicts whether it is right; the audit labels only correct that prediction's
  bias. With calibrated confidences the correction varies far less than right/wrong itself, so
  the interval is narrower at the same coverage; with useless confidences the tuning weight
  falls to zero and it is the audit labels' own interval again.

Both return an ``AccuracyEstimate``; every array is one value per crop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np


@dataclass(frozen=True)
class AccuracyEstimate:
    """An accuracy with its two-sided interval at ``level`` (e.g. 0.95), from ``n`` audit labels.

    ``method`` is "binomial" or "ppi"; ``estimate`` is None (and the interval 0 to 1) when
    there is no audit label.
    """

    estimate: float | None
    low: float
    high: float
    n: int
    level: float
    method: str

    @property
    def width(self) -> float:
        return self.high - self.low


def _z(level: float) -> float:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie in (0, 1), got {level}")
    return NormalDist().inv_cdf(0.5 + level / 2.0)


def binomial_interval(*, correct: np.ndarray, level: float = 0.95) -> AccuracyEstimate:
    """The share of ``correct`` (0/1 per audit label) with its Wilson score interval."""
    outcomes = np.asarray(correct, dtype=np.float64).ravel()
    n = int(outcomes.size)
    if n == 0:
        return AccuracyEstimate(None, 0.0, 1.0, 0, level, "binomial")
    if not np.isin(outcomes, (0.0, 1.0)).all():
        raise ValueError("correct must hold only 0 and 1")
    z = _z(level)
    p = float(outcomes.mean())
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return AccuracyEstimate(
        p, max(0.0, centre - half), min(1.0, centre + half), n, level, "binomial"
    )


def ppi_interval(
    *,
    correct: np.ndarray,
    audit_scores: np.ndarray,
    pool_scores: np.ndarray,
    level: float = 0.95,
) -> AccuracyEstimate:
    """Prediction-powered accuracy of the machine labels on the unlabelled pool.

    Args:
        correct: (n,) 0/1, whether the machine label of each audited crop was right.
        audit_scores: (n,) the predicted chance that it is right (the classifier's calibrated
            top-1 probability when the crop was offered), for the same crops.
        pool_scores: (N,) the same prediction for every unlabelled crop the estimate is about
            (the audited crops among them or not: both are unbiased).
        level: the interval's coverage.

    The estimate is ``lam * mean(pool_scores) + mean(correct - lam * audit_scores)``, with
    ``lam`` the variance-minimising weight estimated from the audit labels (clipped to [0, 1]),
    and a normal interval from both terms' variances. With fewer than 10 audit labels, or
    scores that explain nothing, it returns ``binomial_interval``: the asymptotics do not hold
    yet, and the audit labels' own interval is the honest answer.
    """
    y = np.asarray(correct, dtype=np.float64).ravel()
    f = np.asarray(audit_scores, dtype=np.float64).ravel()
    pool = np.asarray(pool_scores, dtype=np.float64).ravel()
    if y.shape != f.shape:
        raise ValueError(f"correct {y.shape} and audit_scores {f.shape} differ in length")
    if not np.isin(y, (0.0, 1.0)).all():
        raise ValueError("correct must hold only 0 and 1")
    if not (np.isfinite(f).all() and np.isfinite(pool).all()):
        raise ValueError("scores must be finite")
    n, big_n = int(y.size), int(pool.size)
    if n < 10 or big_n < 2 or float(np.var(f)) == 0.0:
        return binomial_interval(correct=y, level=level)
    var_f = float(np.var(np.concatenate([f, pool]), ddof=1))
    cov = float(np.cov(y, f, ddof=1)[0, 1])
    lam = min(1.0, max(0.0, cov / ((1.0 + n / big_n) * var_f))) if var_f > 0 else 0.0
    if lam == 0.0:
        return binomial_interval(correct=y, level=level)
    rectifier = y - lam * f
    estimate = lam * float(pool.mean()) + float(rectifier.mean())
    variance = (
        lam * lam * float(np.var(pool, ddof=1)) / big_n + float(np.var(rectifier, ddof=1)) / n
    )
    # A floor, so that a rectifier whose sample variance happens to be zero (small n, scores
    # that matched every outcome) never gives a zero-width interval.
    p = min(max(estimate, 1.0 / (n + 2)), 1.0 - 1.0 / (n + 2))
    variance = max(variance, p * (1.0 - p) / (4.0 * n * n))
    half = _z(level) * math.sqrt(variance)
    return AccuracyEstimate(
        float(min(1.0, max(0.0, estimate))),
        max(0.0, estimate - half),
        min(1.0, estimate + half),
        n,
        level,
        "ppi",
    )


# Paired audit labels a gate needs before it can refuse a new model (fewer: the
# cross-validated choice decides, as without an audit).
GATE_MIN_PAIRED = 20


@dataclass(frozen=True)
class GateDecision:
    """Whether a new model (the child) replaces the live one (the parent).

    ``keep_child`` False only when the child was right on fewer of the ``n`` paired audit
    crops than the parent; ``reason`` says why in words.
    """

    keep_child: bool
    reason: str
    n: int
    parent_correct: int
    child_correct: int


def paired_gate(
    *, parent_correct: np.ndarray, child_correct: np.ndarray, min_paired: int = GATE_MIN_PAIRED
) -> GateDecision:
    """Keep the child unless it is worse than the parent on the same audit crops.

    Args:
        parent_correct: (n,) 0/1, the parent's machine label of each audit crop was right
            (stored when the crop was offered, so never trained on).
        child_correct: (n,) 0/1, the child's held-out prediction of the same crops was right.
        min_paired: below this many pairs the audit says too little, and the child is kept
            (the cross-validated choice stands).

    Paired: both are judged on the same crops, so only the crops they disagree on count;
    "not worse" is ``child_correct.sum() >= parent_correct.sum()``.
    """
    parent = np.asarray(parent_correct, dtype=np.int64).ravel()
    child = np.asarray(child_correct, dtype=np.int64).ravel()
    if parent.shape != child.shape:
        raise ValueError(f"parent {parent.shape} and child {child.shape} differ in length")
    if not (np.isin(parent, (0, 1)).all() and np.isin(child, (0, 1)).all()):
        raise ValueError("correct must hold only 0 and 1")
    n, p, c = int(parent.size), int(parent.sum()), int(child.sum())
    if n < min_paired:
        return GateDecision(
            True, f"{n} paired audit labels (< {min_paired}): cross-validation decides", n, p, c
        )
    if c >= p:
        return GateDecision(True, f"not worse on {n} audit crops: {c} right vs {p}", n, p, c)
    return GateDecision(False, f"worse on {n} audit crops: {c} right vs {p}", n, p, c)
