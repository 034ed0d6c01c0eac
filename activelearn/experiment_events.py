"""Simulated labelling by crop or by capture event, budget counted in human decisions.
Django-free.

The question (issue 17): does a volunteer's decision buy more accuracy when it labels a whole
capture event than when it labels one crop? Both units pick by k-Center greedy (crops in the
crop space, events over event embeddings, ``selection_events``); the simulated oracle answers
a crop with its true species and an event with the majority true species of its crops (ties to
the smaller label index), so the crops of a mixed event that differ get a wrong label, as they
would from a volunteer who does not press "these differ". After ``b`` decisions a class-balanced
logistic regression (``linear.logistic_fit``, the product's classifier) is fitted on every
labelled crop and scored crop by crop on the test set.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from activelearn.linear import logistic_fit
from activelearn.selection import k_center_greedy
from activelearn.selection_events import event_k_center

UNITS = ("crop", "event")


@dataclass(frozen=True)
class UnitPoint:
    """One unit's run scored at ``budget`` decisions (``decisions`` made: fewer when the pool
    ran out): the crops labelled then,
    how many of those labels were wrong (mixed events), and the test crop top-1."""

    unit: str
    seed: int
    budget: int
    decisions: int
    n_labelled: int
    n_wrong: int
    top1: float


def _majority(labels: np.ndarray) -> int:
    return int(np.bincount(labels).argmax())


def _picks(
    unit: str, x_pool: np.ndarray, labels: np.ndarray, events: np.ndarray, budget: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Each decision in pick order: (crop rows it labels, the oracle's labels for them)."""
    n = labels.size
    if unit == "crop":
        picked = k_center_greedy(
            x_pool, labeled_mask=np.zeros(n, bool), budget=budget, random_state=seed
        )
        return [(np.array([r]), labels[[r]]) for r in picked.indices.tolist()]
    if unit != "event":
        raise ValueError(f"unknown unit {unit!r}; choose one of {', '.join(UNITS)}")
    chosen = event_k_center(
        x_pool,
        events,
        labeled_mask=np.zeros(n, bool),
        candidate_mask=np.ones(n, bool),
        budget=budget,
        random_state=seed,
    )
    return [(rows, np.full(rows.size, _majority(labels[rows]))) for rows in chosen.crop_rows]


def _top1(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray
) -> float:
    classes = np.unique(y_train)
    if classes.size < 2:
        return float(np.mean(y_test == classes[0]))
    # logistic_fit wants labels 0..K-1: the model's columns are ``classes`` in order.
    model, _, _ = logistic_fit(x_train, np.searchsorted(classes, y_train))
    predicted = classes[model.predict_proba(x_test).argmax(axis=1)]
    return float(np.mean(predicted == y_test))


def unit_run(
    unit: str,
    *,
    x_pool: np.ndarray,
    pool_labels: np.ndarray,
    pool_events: np.ndarray,
    x_test: np.ndarray,
    test_labels: np.ndarray,
    budgets: Sequence[int],
    seed: int,
) -> list[UnitPoint]:
    """Label the pool by ``unit`` ("crop" or "event") and score after each of ``budgets``
    (ascending decision counts). k-Center is model-free, so the first ``b`` decisions of one
    greedy run are the run stopped at ``b``; fewer decisions when the pool runs out."""
    y = np.asarray(pool_labels, dtype=np.int64)
    decisions = _picks(unit, x_pool, y, np.asarray(pool_events), max(budgets), seed)
    points = []
    for budget in budgets:
        taken = decisions[:budget]
        rows = np.concatenate([r for r, _ in taken])
        given = np.concatenate([g for _, g in taken])
        points.append(
            UnitPoint(
                unit=unit,
                seed=seed,
                budget=budget,
                decisions=len(taken),
                n_labelled=int(rows.size),
                n_wrong=int(np.sum(given != y[rows])),
                top1=_top1(x_pool[rows], given, x_test, np.asarray(test_labels)),
            )
        )
    return points


def units_summary(
    folds: Iterable[Sequence[UnitPoint]], *, budgets: Sequence[int]
) -> dict[str, dict[str, list[float]]]:
    """Per unit: at each budget the mean over folds of each fold's mean top-1 over seeds
    (``mean``), the lowest fold mean (``worst``), and the mean crops labelled and wrong labels
    per fold."""
    per_fold = [list(points) for points in folds]
    units = list(dict.fromkeys(p.unit for points in per_fold for p in points))
    out: dict[str, dict[str, list[float]]] = {}
    for unit in units:
        means, labelled, wrong = [], [], []
        for budget in budgets:
            fold_top1, fold_n, fold_wrong = [], [], []
            for points in per_fold:
                at = [p for p in points if p.unit == unit and p.budget == budget]
                fold_top1.append(np.mean([p.top1 for p in at]))
                fold_n.append(np.mean([p.n_labelled for p in at]))
                fold_wrong.append(np.mean([p.n_wrong for p in at]))
            means.append(fold_top1)
            labelled.append(float(np.mean(fold_n)))
            wrong.append(float(np.mean(fold_wrong)))
        out[unit] = {
            "mean": [round(float(np.mean(m)), 3) for m in means],
            "worst": [round(float(np.min(m)), 3) for m in means],
            "crops_labelled": [round(v, 1) for v in labelled],
            "wrong_labels": [round(v, 1) for v in wrong],
        }
    return out
