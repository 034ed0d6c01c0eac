"""The product's loop, measured honestly: what ``al_benchmark`` runs by default. Django-free.

``activelearn.experiment`` simulates the loop with research knobs (head fine-tuning, ensembles
of versions); this module simulates what a project with the product's defaults does and scores
what the product stores:

* **Embedding**: the PCA head fitted on the pool's own backbone features (the project's crops;
  ``embeddings.projection``, as ``embeddings.services`` fits it), unit-norm.
* **Rounds**: ``init`` first labels, then rounds of ``step``; the strategy of each round comes
  from ``experiment.round_strategy`` (the name ``default`` is the rule a new project uses).
* **Audit stream**: each round also draws ``audit_share`` of its size uniformly at random from
  the unlabelled pool (a random stream of its own); they are labelled from the ground truth,
  never trained on and hidden from the strategy (as k-Center centres they would leave their
  neighbourhoods untrained and stop standing for the unlabelled crops), and test the live
  classifier (``activelearn.audit``: Wilson and PPI intervals).
* **Classifier**: the retrain's own calls (``activelearn.services.retrain``):
  ``choice.classifier_choose`` by grouped cross-validation (groups: capture sequences),
  ``ensemble_train`` with the kept backend and temperature, ``ensemble_predict_proba``, and the
  stored probabilities ``events.event_probabilities_combine`` over each sequence.
* **Scores** at each budget of ``budgets``: on the test crops, the labels as stored
  (event-combined) and crop by crop; the linear-probe reference (balanced logistic regression
  on the raw L2-normalised backbone features) trained on exactly the loop's labels; and on the
  pool's unlabelled crops the true accuracy of the stored labels beside both audit intervals.

The classifier is fitted at each scored budget, and at every round only where the next round's
strategy reads probabilities: random and k-Center picks do not depend on it, so the picks are
those of a retrain after every round. Folds: ``sequence_folds`` rotates pool and test by
sequence rank; ``product_summary`` reports each metric's mean over folds and worst fold.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from activelearn.audit import AccuracyEstimate, binomial_interval, ppi_interval
from activelearn.choice import CANDIDATES, classifier_choose
from activelearn.classifier import (
    TrainedClassifier,
    classifier_train,
    ensemble_predict_proba,
    ensemble_train,
)
from activelearn.evaluation import EvaluationError
from activelearn.events import event_probabilities_combine
from activelearn.experiment import (
    CropFeatures,
    Scores,
    _round_seed,
    all_strategies,
    probability_scores,
    round_strategy,
)
from embeddings.projection import pca_projection_fit

__all__ = [
    "MODEL_FREE_STRATEGIES",
    "AUDIT_KINDS",
    "AuditPoint",
    "BudgetPoint",
    "ProductConfig",
    "ProductRun",
    "audit_count",
    "crops_subset",
    "interval_summary",
    "pca_embedding",
    "product_run",
    "reference_scores",
    "sequence_folds",
]

# Strategies whose picks never read the classifier's probabilities: with them the loop fits the
# classifier only where it is scored (the picks are the same as with a retrain every round).
MODEL_FREE_STRATEGIES = frozenset({"random", "k_center", "typical"})
# Second seed word of the audit draws' random stream (``np.random.default_rng([seed, this])``).
_AUDIT_STREAM = 0xA0D17


# --- Folds -------------------------------------------------------------------------------------


def sequence_folds(labels: np.ndarray, seq_ids: np.ndarray, *, n_folds: int) -> np.ndarray:
    """(N,) int64 fold in [0, n_folds) of each crop, whole sequences together.

    Each sequence belongs to its main label (the most frequent among its crops; ties to the
    smaller label index); within a label its sequences are sorted by seq_id and the one of rank
    r (1, 2, ...) goes to fold (r - 1) mod ``n_folds``, so every fold gets every species'
    sequences in turn (``coco_split``'s ranks, rotated).
    """
    y, seqs = np.asarray(labels), np.asarray(seq_ids)
    if n_folds < 2:
        raise ValueError(f"n_folds must be >= 2, got {n_folds}")
    if y.shape != seqs.shape or y.ndim != 1:
        raise ValueError(f"labels and seq_ids must be (N,), got {y.shape}, {seqs.shape}")
    main: dict[str, int] = {}
    for seq in sorted(set(seqs.tolist())):
        counts = np.bincount(y[seqs == seq])
        main[seq] = int(counts.argmax())
    fold = np.zeros(y.size, dtype=np.int64)
    for label in sorted(set(main.values())):
        ranked = sorted(seq for seq, m in main.items() if m == label)
        for rank, seq in enumerate(ranked):
            fold[seqs == seq] = rank % n_folds
    return fold


def crops_subset(crops: CropFeatures, rows: np.ndarray) -> CropFeatures:
    """The crops of ``rows`` (int indices or an (N,) bool mask), every array restricted."""
    return dataclasses.replace(
        crops,
        features=crops.features[rows],
        views=crops.views[:, rows] if crops.views.shape[0] else crops.views[:, :0],
        labels=crops.labels[rows],
        seq_ids=crops.seq_ids[rows],
        crop_pixels=crops.crop_pixels[rows],
    )


def pca_embedding(
    pool_features: np.ndarray, test_features: np.ndarray, *, dim: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Unit-norm (N, dim) embeddings of pool and test through the PCA head fitted on the pool
    alone (the project's own crops; the test crops are not the project's)."""
    projection = pca_projection_fit(pool_features, dim=dim, seed=seed)
    return _unit(projection.apply(pool_features)), _unit(projection.apply(test_features))


def _unit(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    unit: np.ndarray = (x / np.maximum(norms, 1e-12)).astype(np.float32)
    return unit


# --- Configuration and results ----------------------------------------------------------------


@dataclass(frozen=True)
class ProductConfig:
    """A simulated project with the product's settings (the caller reads them from the product:
    ``al_benchmark`` takes the ``Project`` field defaults; nothing is duplicated here).

    Attributes:
        init: labels of the first round; step: labels of each later round.
        budgets: label counts where the loop is scored, ascending; the last is the budget. Each
            must be a count the rounds reach (init + k * step, or the last).
        first_round_strategy: the strategy of the first round; later rounds of the ``default``
            strategy follow the product's rule (``experiment.round_strategy``).
        class_balance, ensemble_size: the retrain's classifier settings.
        audit_share: share of each round drawn at random for the audit stream (0: none).
        cv_folds: folds of the retrain's cross-validation (``classifier_choose``).
    """

    init: int
    step: int
    budgets: tuple[int, ...]
    first_round_strategy: str
    class_balance: str
    ensemble_size: int
    audit_share: float
    cv_folds: int

    def __post_init__(self) -> None:
        if self.init < 1 or self.step < 1 or not self.budgets:
            raise ValueError("need init >= 1, step >= 1 and at least one budget")
        if list(self.budgets) != sorted(set(self.budgets)) or self.budgets[0] < self.init:
            raise ValueError(f"budgets must ascend from init, got {self.budgets}")
        reached = set(self.schedule())
        missing = [b for b in self.budgets if b not in reached]
        if missing:
            raise ValueError(
                f"budgets {missing} are not reached by rounds of {self.step} after {self.init}"
            )
        if not 0.0 <= self.audit_share < 1.0:
            raise ValueError(f"audit_share must lie in [0, 1), got {self.audit_share}")

    def schedule(self) -> list[int]:
        """Training-label counts after each round: init, init + step, ..., the last budget."""
        stop = self.budgets[-1]
        counts = list(range(self.init, stop, self.step))
        return [*counts, stop]


def audit_count(round_size: int, share: float) -> int:
    """Audit crops drawn with a round of ``round_size`` (share of it, rounded half up)."""
    return int(math.floor(share * round_size + 0.5))


@dataclass(frozen=True)
class AuditPoint:
    """The audit stream at one budget: ``n`` audit labels; ``truth`` the stored labels' true
    accuracy on the pool's unlabelled crops (``n_unlabelled`` of them); the two intervals."""

    n: int
    n_unlabelled: int
    truth: float
    wilson: AccuracyEstimate
    ppi: AccuracyEstimate


@dataclass(frozen=True)
class BudgetPoint:
    """Scores after ``n_labels`` training labels (test set unless said otherwise).

    Attributes:
        stored: the labels as the product stores them (event-combined probabilities).
        crop: the same classifier crop by crop.
        reference: the linear probe on raw backbone features with the loop's labels.
        backend, temperature: what ``classifier_choose`` kept.
        audit: the audit stream's estimate of the stored labels' accuracy on the pool's
            unlabelled crops against the truth (None without audit labels).
        audit_crop: the same for the crop-only labels (no help from labelled event-mates).
    """

    n_labels: int
    stored: Scores
    crop: Scores
    reference: Scores
    backend: str
    temperature: float
    audit: AuditPoint | None
    audit_crop: AuditPoint | None = None


@dataclass(frozen=True)
class ProductRun:
    """One strategy, one seed on one split: a point per scored budget, the training picks
    (pool rows, labelling order) and the audit picks."""

    strategy: str
    seed: int
    points: list[BudgetPoint]
    picks: np.ndarray
    audit_picks: np.ndarray
    seconds: float


# --- The product's classifier -------------------------------------------------------------------


@dataclass(frozen=True)
class _Live:
    """The live classifier: its members (temperature set) and kept backend."""

    members: list[TrainedClassifier]
    backend: str
    temperature: float


def _retrain(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, *, seed: int, config: ProductConfig
) -> _Live:
    """What ``services.retrain`` does with the labelled crops: choose, train, set temperature."""
    try:
        choice = classifier_choose(
            x,
            y,
            groups=groups,
            random_state=seed,
            candidates=CANDIDATES,
            class_balance=config.class_balance,
            ensemble_size=config.ensemble_size,
            n_splits=config.cv_folds,
        )
        backend, temperature = choice.backend, choice.temperature
    except EvaluationError:  # the retrain's fallback: too few events or classes to validate
        backend, temperature = CANDIDATES[0], 1.0
    members = [
        dataclasses.replace(member, temperature=temperature)
        for member in ensemble_train(
            x,
            y,
            random_state=seed,
            class_balance=config.class_balance,
            size=config.ensemble_size,
            backend=backend,
        )
    ]
    return _Live(members, backend, temperature)


def _stored(
    live: _Live, x: np.ndarray, events: np.ndarray, n_classes: int
) -> tuple[np.ndarray, np.ndarray]:
    """((N, n_classes) crop-only, (N, n_classes) stored) probabilities of ``live`` on ``x``."""
    probs, classes = ensemble_predict_proba(live.members, x)
    crop = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    crop[:, classes] = probs
    crop /= crop.sum(axis=1, keepdims=True)
    stored = event_probabilities_combine(crop, events).probabilities.astype(np.float64)
    return crop, stored / stored.sum(axis=1, keepdims=True)


def reference_scores(
    raw_pool: np.ndarray,
    pool_labels: np.ndarray,
    rows: np.ndarray,
    test: CropFeatures,
    *,
    seed: int,
) -> Scores:
    """The linear-probe reference: balanced logistic regression on the L2-normalised raw
    backbone features (N_pool, F) of exactly the pool ``rows`` the loop labelled, scored crop by
    crop on ``test``."""
    clf = classifier_train(
        _unit(raw_pool[rows]), pool_labels[rows], random_state=seed, backend="logistic"
    )
    n_classes = len(test.label_names)
    probs, classes = ensemble_predict_proba([clf], _unit(test.features))
    full = np.zeros((len(test), n_classes), dtype=np.float64)
    full[:, classes] = probs
    full /= full.sum(axis=1, keepdims=True)
    return probability_scores(full, test.labels, test.seq_ids, n_classes)


def _audit_point(
    stored_pool: np.ndarray, pool: CropFeatures, unlabelled: np.ndarray, audited: np.ndarray
) -> AuditPoint | None:
    """The stored labels' accuracy on the unlabelled pool rows (the truth) and its audit
    estimates: Wilson from the audited rows' hits, PPI with every unlabelled row's stored
    confidence."""
    if audited.size == 0 or not unlabelled.any():
        return None
    predicted, confidence = stored_pool.argmax(axis=1), stored_pool.max(axis=1)
    hits = predicted == pool.labels
    return AuditPoint(
        n=int(audited.size),
        n_unlabelled=int(unlabelled.sum()),
        truth=float(hits[unlabelled].mean()),
        wilson=binomial_interval(correct=hits[audited]),
        ppi=ppi_interval(
            correct=hits[audited],
            audit_scores=confidence[audited],
            pool_scores=confidence[unlabelled],
        ),
    )


# --- The loop ----------------------------------------------------------------------------------


def product_run(
    strategy: str,
    pool: CropFeatures,
    test: CropFeatures,
    *,
    x_pool: np.ndarray,
    x_test: np.ndarray,
    config: ProductConfig,
    seed: int,
) -> ProductRun:
    """Simulate one project labelling ``pool`` with ``strategy`` (a canonical name or
    ``default``), scoring at ``config.budgets``.

    Args:
        pool, test: crops with raw backbone features (N, F), same label names.
        x_pool, x_test: (N_pool, d) and (N_test, d) the product's embedding (``pca_embedding``).
        config: the product's settings; seed: the run's seed >= 0.

    Raises:
        ValueError: a pool too small for the last budget plus its audit crops.
    """
    started = time.perf_counter()
    n_classes = len(pool.label_names)
    schedule = config.schedule()
    labeled = np.zeros(len(pool), dtype=bool)  # trained on
    audited = np.zeros(len(pool), dtype=bool)  # audit stream: labelled, never trained on
    picks: list[int] = []
    audit_picks: list[int] = []
    live: _Live | None = None
    points: list[BudgetPoint] = []
    for index, target in enumerate(schedule):
        round_seed = _round_seed(seed, index)
        # Its own stream: drawn with the strategy's seed, the audit and a random strategy's
        # picks would be correlated (the same permutation of nearly the same rows).
        rng = np.random.default_rng([round_seed, _AUDIT_STREAM])
        n_new = target - len(picks)
        n_audit = audit_count(n_new, config.audit_share)
        free = np.flatnonzero(~labeled & ~audited)
        if free.size < n_new + n_audit:
            raise ValueError(f"the pool has {free.size} crops left, round {index} needs more")
        # The audit share first, uniformly among the unlabelled crops; then the strategy's picks
        # among the rest.
        chosen = rng.choice(free, n_audit, replace=False) if n_audit else free[:0]
        audited[chosen] = True
        audit_picks += [int(i) for i in chosen]
        name = round_strategy(
            strategy,
            round_index=index,
            n_labels=len(picks),
            n_crops=len(pool),
            n_species=n_classes,
            first_round_strategy=config.first_round_strategy,
        )
        probabilities = None
        if name not in MODEL_FREE_STRATEGIES:
            assert live is not None, "only the first round runs without a classifier"
            top = -np.sort(-_stored(live, x_pool, pool.seq_ids, n_classes)[1], axis=1)
            probabilities = top[:, :5].astype(np.float32)
        # The strategy never sees the audit crops: as centres (k-Center) they would leave their
        # neighbourhoods untrained, unlike the unlabelled crops they are meant to stand for.
        visible = np.flatnonzero(~audited)
        new = visible[
            all_strategies()[name](
                x_pool[visible],
                labeled_mask=labeled[visible],
                budget=n_new,
                random_state=round_seed,
                probabilities=None if probabilities is None else probabilities[visible],
            ).indices
        ]
        labeled[new] = True
        picks += [int(i) for i in new]
        next_name = (
            round_strategy(
                strategy,
                round_index=index + 1,
                n_labels=len(picks),
                n_crops=len(pool),
                n_species=n_classes,
                first_round_strategy=config.first_round_strategy,
            )
            if index + 1 < len(schedule)
            else "random"
        )
        scored = target in config.budgets
        if not scored and next_name in MODEL_FREE_STRATEGIES:
            continue
        rows = np.asarray(picks, dtype=np.int64)
        live = _retrain(
            x_pool[rows], pool.labels[rows], pool.seq_ids[rows], seed=round_seed, config=config
        )
        if scored:
            points.append(_point(live, pool, test, x_pool, x_test, rows, labeled, audited, seed))
    return ProductRun(
        strategy=strategy,
        seed=seed,
        points=points,
        picks=np.asarray(picks, dtype=np.int64),
        audit_picks=np.asarray(audit_picks, dtype=np.int64),
        seconds=time.perf_counter() - started,
    )


def _point(
    live: _Live,
    pool: CropFeatures,
    test: CropFeatures,
    x_pool: np.ndarray,
    x_test: np.ndarray,
    rows: np.ndarray,
    labeled: np.ndarray,
    audited: np.ndarray,
    seed: int,
) -> BudgetPoint:
    """Every score of one budget (see ``BudgetPoint``)."""
    n_classes = len(pool.label_names)
    crop, stored = _stored(live, x_test, test.seq_ids, n_classes)
    crop_pool, stored_pool = _stored(live, x_pool, pool.seq_ids, n_classes)
    unlabelled, audit_rows = ~labeled & ~audited, np.flatnonzero(audited)
    return BudgetPoint(
        n_labels=int(rows.size),
        stored=probability_scores(stored, test.labels, test.seq_ids, n_classes),
        crop=probability_scores(crop, test.labels, test.seq_ids, n_classes),
        reference=reference_scores(pool.features, pool.labels, rows, test, seed=seed),
        backend=live.backend,
        temperature=live.temperature,
        audit=_audit_point(stored_pool, pool, unlabelled, audit_rows),
        audit_crop=_audit_point(crop_pool, pool, unlabelled, audit_rows),
    )


# --- Summaries ---------------------------------------------------------------------------------


def interval_summary(truth: np.ndarray, low: np.ndarray, high: np.ndarray) -> tuple[float, float]:
    """(coverage, mean width) of P intervals: the share with low <= truth <= high, and the mean
    of high - low. Raises ValueError for no point or mismatched shapes."""
    t, lo, hi = (np.asarray(a, dtype=np.float64).ravel() for a in (truth, low, high))
    if t.size == 0 or not t.shape == lo.shape == hi.shape:
        raise ValueError(f"need P >= 1 matching points, got {t.shape}, {lo.shape}, {hi.shape}")
    covered = (lo <= t) & (t <= hi)
    return float(covered.mean()), float((hi - lo).mean())


# Per budget, the test metrics a summary reports: (name, which Scores, which field).
SUMMARY_METRICS: tuple[tuple[str, str, str], ...] = (
    ("stored_top1", "stored", "top1"),
    ("stored_top5", "stored", "top5"),
    ("stored_seq_top1", "stored", "seq_top1"),
    ("crop_top1", "crop", "top1"),
    ("crop_top5", "crop", "top5"),
    ("reference_top1", "reference", "top1"),
    ("reference_top5", "reference", "top5"),
    ("reference_seq_top1", "reference", "seq_top1"),
)


# The audits a BudgetPoint carries: of the stored labels, and of the crop-only labels.
AUDIT_KINDS: tuple[str, ...] = ("audit", "audit_crop")


def _r(values: np.ndarray) -> list[float]:
    return [round(float(v), 4) for v in values]


def _audit_summary(points: list[AuditPoint]) -> dict[str, float]:
    """Coverage and mean width of both intervals over ``points``; PPI's width relative to
    Wilson's (1 - mean PPI width / mean Wilson width: how much narrower)."""
    truth = np.array([p.truth for p in points])
    out: dict[str, float] = {
        "points": len(points),
        "n_audit_mean": float(np.mean([p.n for p in points])),
    }
    for method in ("wilson", "ppi"):
        estimates = [getattr(p, method) for p in points]
        coverage, width = interval_summary(
            truth, np.array([e.low for e in estimates]), np.array([e.high for e in estimates])
        )
        out[f"{method}_coverage"], out[f"{method}_width"] = round(coverage, 4), round(width, 4)
    out["ppi_narrower"] = round(1.0 - out["ppi_width"] / out["wilson_width"], 4)
    out["truth_mean"] = round(float(truth.mean()), 4)
    return out


def product_summary(folds: list[list[ProductRun]], *, budgets: Sequence[int]) -> dict[str, Any]:
    """JSON-ready summary of ``product_folds``' runs, per strategy: for each metric of
    ``SUMMARY_METRICS`` per fold (mean over seeds, one value per budget), the mean over folds
    and the worst fold (lowest); the classifiers kept; and the audit stream per budget and
    overall (``_audit_summary`` over the (fold, seed) points), for the stored labels (``audit``)
    and the crop-only ones (``audit_crop``); plus both over every strategy's points."""
    strategies = list(dict.fromkeys(run.strategy for runs in folds for run in runs))
    out: dict[str, Any] = {"budgets": list(budgets), "n_folds": len(folds)}
    every: dict[str, list[AuditPoint]] = {kind: [] for kind in AUDIT_KINDS}
    per_strategy: dict[str, Any] = {}
    for strategy in strategies:
        runs = [[r for r in fold_runs if r.strategy == strategy] for fold_runs in folds]
        entry: dict[str, Any] = {}
        for name, part, field_name in SUMMARY_METRICS:
            per_fold = np.array(
                [
                    np.mean(
                        [[getattr(getattr(p, part), field_name) for p in r.points] for r in fr],
                        axis=0,
                    )
                    for fr in runs
                ]
            )  # (F, B)
            entry[name] = {
                "mean": _r(per_fold.mean(axis=0)),
                "worst": _r(per_fold.min(axis=0)),
                "per_fold": [_r(row) for row in per_fold],
            }
        points = [p for fr in runs for r in fr for p in r.points]
        entry["backends"] = {b: sum(p.backend == b for p in points) for b in CANDIDATES}
        for kind in AUDIT_KINDS:
            audits = [a for p in points if (a := getattr(p, kind)) is not None]
            every[kind] += audits
            by_budget = {
                str(b): [a for p in points if (a := getattr(p, kind)) and p.n_labels == b]
                for b in budgets
            }
            audit = {b: _audit_summary(a) for b, a in by_budget.items() if a}
            if audits:
                audit["all"] = _audit_summary(audits)
            entry[kind] = audit
        entry["seconds"] = round(sum(r.seconds for fr in runs for r in fr), 1)
        per_strategy[strategy] = entry
    out["strategies"] = per_strategy
    for kind, points_ in every.items():
        if points_:
            out[kind] = _audit_summary(points_)
    return out
