"""Labelling by crop or by event, budget in decisions: tiny synthetic pools."""

from __future__ import annotations

import numpy as np
import pytest

from activelearn.experiment_events import unit_run, units_summary


def _pool() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two species in well-separated clusters; 6 events of 3 crops, event 'm' mixed."""
    rng = np.random.default_rng(0)
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1])
    events = np.repeat(["a", "b", "c", "d", "m", "f"], 3)
    centres = np.array([[5.0, 0.0, 0.0], [0.0, 5.0, 0.0]])
    x = centres[labels] + rng.normal(scale=0.3, size=(18, 3))
    return x.astype(np.float32), labels, events


def test_an_event_decision_labels_all_its_crops_with_its_majority() -> None:
    x, y, events = _pool()
    run = unit_run(
        "event",
        x_pool=x,
        pool_labels=y,
        pool_events=events,
        x_test=x,
        test_labels=y,
        budgets=[2, 6, 10],
        seed=0,
    )
    assert [p.decisions for p in run] == [2, 6, 6]  # only 6 events to decide
    assert [p.n_labelled for p in run] == [6, 18, 18]
    # Event m is 0, 0, 1: its majority 0 makes one label wrong.
    assert run[-1].n_wrong == 1
    assert run[-1].top1 == pytest.approx(1.0)


def test_a_crop_decision_labels_one_crop_rightly() -> None:
    x, y, events = _pool()
    run = unit_run(
        "crop",
        x_pool=x,
        pool_labels=y,
        pool_events=events,
        x_test=x,
        test_labels=y,
        budgets=[1, 4],
        seed=1,
    )
    assert [(p.decisions, p.n_labelled, p.n_wrong) for p in run] == [(1, 1, 0), (4, 4, 0)]
    # One labelled crop: its class is predicted everywhere.
    assert run[0].top1 in (pytest.approx(np.mean(y == 0)), pytest.approx(np.mean(y == 1)))


def test_unknown_unit_is_refused() -> None:
    x, y, events = _pool()
    with pytest.raises(ValueError, match="unknown unit"):
        unit_run(
            "frame",
            x_pool=x,
            pool_labels=y,
            pool_events=events,
            x_test=x,
            test_labels=y,
            budgets=[1],
            seed=0,
        )


def test_summary_is_the_mean_and_worst_fold_of_seed_means() -> None:
    x, y, events = _pool()
    folds = []
    for fold_seed in (0, 1):
        points = []
        for seed in (0, 1):
            for unit in ("crop", "event"):
                points += unit_run(
                    unit,
                    x_pool=x,
                    pool_labels=y,
                    pool_events=events,
                    x_test=x[:: fold_seed + 1],
                    test_labels=y[:: fold_seed + 1],
                    budgets=[2, 3],
                    seed=seed,
                )
        folds.append(points)
    summary = units_summary(folds, budgets=[2, 3])
    for unit in ("crop", "event"):
        fold_means = [
            [np.mean([p.top1 for p in f if p.unit == unit and p.budget == b]) for f in folds]
            for b in (2, 3)
        ]
        assert summary[unit]["mean"] == [round(float(np.mean(m)), 3) for m in fold_means]
        assert summary[unit]["worst"] == [round(float(np.min(m)), 3) for m in fold_means]
    assert summary["event"]["crops_labelled"] == [6.0, 9.0]
