"""The audit's intervals: exact on tiny inputs, honest coverage on simulated projects."""

from __future__ import annotations

import math

import numpy as np
import pytest

from activelearn.audit import binomial_interval, ppi_interval


def test_wilson_interval_matches_its_formula() -> None:
    got = binomial_interval(correct=np.array([1] * 15 + [0] * 15), level=0.95)
    z = 1.959963984540054
    n, p = 30, 0.5
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert got.estimate == 0.5 and got.n == 30 and got.method == "binomial"
    assert got.low == pytest.approx(centre - half) and got.high == pytest.approx(centre + half)
    assert got.width == pytest.approx(0.3374, abs=1e-3)  # the "+-17 points"


def test_no_audit_label_says_so() -> None:
    got = binomial_interval(correct=np.array([]))
    assert got.estimate is None and (got.low, got.high) == (0.0, 1.0)


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="only 0 and 1"):
        binomial_interval(correct=np.array([0.5]))
    with pytest.raises(ValueError, match="differ in length"):
        ppi_interval(correct=np.ones(3), audit_scores=np.ones(2), pool_scores=np.ones(5))
    with pytest.raises(ValueError, match="finite"):
        ppi_interval(correct=np.ones(12), audit_scores=np.full(12, np.nan), pool_scores=np.ones(5))


def test_ppi_matches_its_formula_when_the_weight_is_inside_its_bounds() -> None:
    rng = np.random.default_rng(0)
    pool = rng.uniform(0.3, 1.0, 500)
    audit = rng.uniform(0.3, 1.0, 40)
    correct = (rng.uniform(size=40) < audit).astype(float)
    got = ppi_interval(correct=correct, audit_scores=audit, pool_scores=pool)
    n, big_n = 40, 500
    var_f = np.var(np.concatenate([audit, pool]), ddof=1)
    lam = np.cov(correct, audit, ddof=1)[0, 1] / ((1 + n / big_n) * var_f)
    assert 0 < lam < 1
    estimate = lam * pool.mean() + (correct - lam * audit).mean()
    assert got.method == "ppi" and got.estimate == pytest.approx(estimate)


def test_too_few_labels_or_useless_scores_fall_back_to_the_binomial() -> None:
    correct = np.array([1, 0, 1, 1, 0, 1, 1, 1, 0], dtype=float)
    got = ppi_interval(correct=correct, audit_scores=np.linspace(0, 1, 9), pool_scores=np.ones(50))
    assert got.method == "binomial"
    flat = ppi_interval(
        correct=np.tile([1.0, 0.0], 20), audit_scores=np.full(40, 0.7), pool_scores=np.ones(50)
    )
    assert flat.method == "binomial"


@pytest.mark.parametrize("n_audit", [10, 30, 100])
def test_coverage_and_width_on_simulated_projects(n_audit: int) -> None:
    """A calibrated classifier on a pool of 2,000 crops: both intervals cover the true accuracy
    in at least 90% of 400 projects at 95%, and the prediction-powered one is narrower."""
    rng = np.random.default_rng(n_audit)
    covered = {"binomial": 0, "ppi": 0}
    widths: dict[str, list[float]] = {"binomial": [], "ppi": []}
    runs = 400
    for _ in range(runs):
        scores = rng.beta(4, 1.5, 2000)  # calibrated: P(right) = score
        right = rng.uniform(size=2000) < scores
        truth = right.mean()
        audit = rng.choice(2000, n_audit, replace=False)
        for name, est in (
            ("binomial", binomial_interval(correct=right[audit].astype(float))),
            (
                "ppi",
                ppi_interval(
                    correct=right[audit].astype(float),
                    audit_scores=scores[audit],
                    pool_scores=scores,
                ),
            ),
        ):
            covered[name] += est.low <= truth <= est.high
            widths[name].append(est.width)
    assert covered["binomial"] / runs >= 0.9
    assert covered["ppi"] / runs >= 0.9
    assert np.mean(widths["ppi"]) < np.mean(widths["binomial"])


def test_paired_gate_keeps_the_child_unless_worse() -> None:
    from activelearn.audit import paired_gate

    parent = np.array([1, 1, 0, 0] * 6)
    assert paired_gate(parent_correct=parent, child_correct=parent).keep_child  # a tie keeps
    better = parent.copy()
    better[2] = 1
    assert paired_gate(parent_correct=parent, child_correct=better).keep_child
    worse = parent.copy()
    worse[0] = 0
    decision = paired_gate(parent_correct=parent, child_correct=worse)
    assert not decision.keep_child and (decision.n, decision.parent_correct) == (24, 12)
    assert decision.child_correct == 11 and "worse" in decision.reason
    few = paired_gate(parent_correct=parent[:5], child_correct=np.zeros(5))
    assert few.keep_child and "cross-validation decides" in few.reason
    with pytest.raises(ValueError, match="length"):
        paired_gate(parent_correct=parent, child_correct=parent[:3])
