"""Simulated active learning on labelled camera-trap crops (Norouzzadeh et al. 2019, sec. 3).

A simulated oracle answers from the ground truth of a labelled *pool*; the loop is the
product's: a random first round of ``init`` labels, then rounds of ``step`` picks by a
selection strategy until ``budget``, retraining the classifier after every round and,
optionally, fine-tuning the embedding head with triplet loss every ``finetune_every`` new
labels. After each round the classifier is scored on a held-out *test* set of other
capture sequences with ``activelearn.metrics.classification_metrics``: crop top-1/top-5,
sequence top-1 (crop probabilities averaged over the sequence, the paper's capture-event
rule, against the sequence's majority label), F1 macro, log loss and per-species accuracy.

``LoopConfig.class_balance`` trains the classifier (and the fine-tuned head's triplet
sampler) with the product's class-balance setting; ``ensemble_size`` K > 1 averages the
probabilities of K classifiers: K seeds trained on the same labels (``"seeds"``, what the
product does, with the product's own ``ensemble_train`` and ``ensemble_predict_proba``) or the
classifiers of the newest K rounds on the current embedding (``"versions"``).

Everything here runs the project's real code (``activelearn.selection``,
``activelearn.classifier``, ``embeddings.training``) on numpy arrays; no Django. Backbone
features of the crops are computed once and cached on disk (``crop_features``), so a
whole benchmark is matrix products plus small classifier fits. All randomness is seeded.

The data side (``crop_features``, ``coco_split`` and their dataclasses) lives in
``activelearn.experiment_data``; it is re-exported here, so callers import the benchmark from
one module.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from torch import nn

from activelearn.classifier import (
    CLASS_BALANCES,
    TrainedClassifier,
    classifier_predict,
    ensemble_predict_proba,
    ensemble_train,
)
from activelearn.experiment_data import CocoSplit, CropFeatures, coco_split, crop_features
from activelearn.metrics import classification_metrics
from activelearn.selection import STRATEGIES, Selection
from activelearn.selection_extra import EXTRA_STRATEGIES, knn_radius
from activelearn.selection_rule import strategy_for_round
from embeddings.model import EmbeddingNet
from embeddings.training import TrainConfig, embed_from_features, train_head

__all__ = [
    "ALIASES",
    "DEFAULT_RULE",
    "ENSEMBLE_MODES",
    "SELECTION_SPACES",
    "CocoSplit",
    "CropFeatures",
    "ExperimentResult",
    "LoopConfig",
    "PickDiagnostics",
    "RoundScore",
    "RunResult",
    "Scores",
    "StrategySummary",
    "all_strategies",
    "coco_split",
    "crop_features",
    "evaluate",
    "full_pool_scores",
    "pick_diagnostics",
    "probability_scores",
    "resolve_strategy",
    "round_strategy",
    "run_benchmark",
    "run_loop",
    "summarise",
]

# Other spellings of strategy names (the paper and the command line say "k-Center").
ALIASES: dict[str, str] = {"kcenter": "k_center", "k-center": "k_center"}

StrategyFn = Callable[..., Selection]

# The strategy name meaning "what a new project does" (``round_strategy``).
DEFAULT_RULE = "default"


def all_strategies() -> dict[str, StrategyFn]:
    """Every selection strategy by name: the product's ``STRATEGIES`` plus the extra ones."""
    return {**STRATEGIES, **EXTRA_STRATEGIES}


def resolve_strategy(name: str) -> str:
    """Canonical strategy name for ``name`` (aliases such as "kcenter" accepted; ``default``:
    the rule a new project follows, see ``round_strategy``).

    Raises:
        ValueError: unknown name (the message lists the known ones).
    """
    canonical = ALIASES.get(name.strip().lower(), name.strip().lower())
    known = all_strategies()
    if canonical not in known and canonical != DEFAULT_RULE:
        raise ValueError(
            f"unknown strategy {name!r}; known: {DEFAULT_RULE}, {', '.join(sorted(known))} "
            f"(aliases: {', '.join(sorted(ALIASES))})"
        )
    return canonical


def round_strategy(
    name: str,
    *,
    round_index: int,
    n_labels: int,
    n_crops: int,
    n_species: int,
    first_round_strategy: str,
) -> str:
    """The selection strategy a simulated round runs: the one place where ``default`` is decided.

    ``name`` is a canonical strategy or ``DEFAULT_RULE``. Round 0 runs ``first_round_strategy``
    whatever ``name`` says (the product's first round: no classifier exists yet). Later rounds
    run ``name``, or for ``default`` what a new project's rounds run:
    ``selection_rule.strategy_for_round`` on ``n_labels`` training labels among ``n_crops``
    pool crops of ``n_species`` species, as ``services.rounds.round_strategy_choice`` calls it
    (the simulation has no audit accuracy to give it: its audit stream only measures).
    """
    if round_index == 0:
        return first_round_strategy
    if name != DEFAULT_RULE:
        return name
    return strategy_for_round(
        n_labels=n_labels, n_crops=n_crops, n_species=n_species, has_classifier=True
    ).strategy


# --- Scoring ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Scores:
    """Test-set scores of one classifier (``activelearn.metrics``; fractions in [0, 1]).

    Attributes:
        top1: crops whose most probable label is right.
        top5: crops whose label is among the five most probable.
        seq_top1: sequences whose mean crop probability vector peaks at the sequence's
            majority ground-truth label.
        f1_macro: F1 of the top-1 labels, averaged over the classes.
        log_loss: mean negative log probability of the true class (nats).
        per_species: per class (label index), the share of its test crops predicted
            right; None for a class without test crops.
    """

    top1: float
    top5: float
    seq_top1: float
    f1_macro: float = float("nan")
    log_loss: float = float("nan")
    per_species: tuple[float | None, ...] = ()


def _probability_matrix(
    clf: TrainedClassifier | Sequence[TrainedClassifier], x: np.ndarray, n_classes: int
) -> np.ndarray:
    """(N, n_classes) float64 class probabilities; classes never trained on get 0.

    Several classifiers (an ensemble): the mean of their probabilities, as the product's
    retrain computes it (``ensemble_predict_proba``).
    """
    models = [clf] if isinstance(clf, TrainedClassifier) else list(clf)
    mean, classes = ensemble_predict_proba(models, x)
    result = np.zeros((x.shape[0], n_classes), dtype=np.float64)
    result[:, classes] = mean
    # float32 rows sum to 1 within ~1e-7, short of scikit-learn's log-loss check.
    normalised: np.ndarray = result / result.sum(axis=1, keepdims=True)
    return normalised


def evaluate(
    clf: TrainedClassifier | Sequence[TrainedClassifier],
    x: np.ndarray,
    labels: np.ndarray,
    seq_ids: np.ndarray,
    n_classes: int,
) -> Scores:
    """Score ``clf`` (or the mean of several: an ensemble) on test embeddings ``x`` (N, d)
    with true ``labels`` (N,, indices below ``n_classes``) and ``seq_ids``, with
    ``activelearn.metrics.classification_metrics`` (sequences are its capture events)."""
    return probability_scores(_probability_matrix(clf, x, n_classes), labels, seq_ids, n_classes)


def probability_scores(
    probs: np.ndarray, labels: np.ndarray, seq_ids: np.ndarray, n_classes: int
) -> Scores:
    """Score (N, n_classes) class probabilities (rows sum to 1) against ``labels`` (N,), with
    ``seq_ids`` (N,) as the capture events (``activelearn.metrics.classification_metrics``)."""
    metrics = classification_metrics(probs, labels, classes=np.arange(n_classes), events=seq_ids)
    return Scores(
        top1=metrics.top1,
        top5=metrics.top5,
        seq_top1=float(metrics.event_top1 if metrics.event_top1 is not None else float("nan")),
        f1_macro=metrics.f1_macro,
        log_loss=metrics.log_loss,
        per_species=tuple(accuracy for accuracy, _ in metrics.per_class().values()),
    )


# --- The loop ------------------------------------------------------------------------------

SELECTION_SPACES: tuple[str, ...] = ("embedding", "backbone")
# What an ensemble of K averages: K seeds on the same labels, or the newest K rounds' models.
ENSEMBLE_MODES: tuple[str, ...] = ("seeds", "versions")


@dataclass(frozen=True)
class LoopConfig:
    """Parameters of one simulated active-learning run.

    Attributes:
        init: labels of the random first round (>= 1).
        step: picks per later round (>= 1).
        budget: stop once this many labels exist (>= init).
        finetune_every: fine-tune the embedding head whenever this many labels arrived
            since the last fine-tuning; 0 = never (frozen starting embedding).
        finetune_epochs: epochs of each head fine-tuning (``TrainConfig.epochs``).
        finetune_lr: Adam learning rate of the head.
        selection_space: what the strategy sees: "embedding" (the current unit-norm
            embedding, as in the product) or "backbone" (raw pooled backbone features).
        class_balance: the classifier's and the triplet sampler's class balance
            (``activelearn.classifier.CLASS_BALANCES``).
        ensemble_size: classifiers whose probabilities are averaged (1: one model).
        ensemble_mode: "seeds" (K seeds trained on the current labels: the run seed and the
            next K - 1, the product's ``ensemble_train``) or "versions" (the classifiers of
            the newest K rounds since the last fine-tuning).
    """

    init: int
    step: int
    budget: int
    finetune_every: int = 0
    finetune_epochs: int = 10
    finetune_lr: float = 1e-3
    selection_space: str = "embedding"
    class_balance: str = "none"
    ensemble_size: int = 1
    ensemble_mode: str = "seeds"

    def __post_init__(self) -> None:
        if self.init < 1 or self.step < 1 or self.budget < self.init:
            raise ValueError(
                f"need init >= 1, step >= 1 and budget >= init, got init={self.init} "
                f"step={self.step} budget={self.budget}"
            )
        if self.finetune_every < 0 or self.finetune_epochs < 1 or not self.finetune_lr > 0:
            raise ValueError("need finetune_every >= 0, finetune_epochs >= 1, finetune_lr > 0")
        if self.selection_space not in SELECTION_SPACES:
            raise ValueError(f"selection_space must be one of {', '.join(SELECTION_SPACES)}")
        if self.class_balance not in CLASS_BALANCES:
            raise ValueError(f"class_balance must be one of {', '.join(CLASS_BALANCES)}")
        if self.ensemble_size < 1 or self.ensemble_mode not in ENSEMBLE_MODES:
            raise ValueError(
                f"need ensemble_size >= 1 and ensemble_mode in {', '.join(ENSEMBLE_MODES)}"
            )

    def schedule(self, n_pool: int) -> list[int]:
        """Label counts after each round: init, init+step, ..., capped at budget and pool."""
        stop = min(self.budget, n_pool)
        counts = list(range(min(self.init, stop), stop, self.step))
        return counts if counts and counts[-1] == stop else [*counts, stop]


@dataclass(frozen=True)
class RoundScore:
    """Scores after one round: ``n_labels`` labels; ``finetuned``: the head was just tuned."""

    n_labels: int
    scores: Scores
    finetuned: bool


@dataclass(frozen=True)
class RunResult:
    """One strategy, one seed.

    Attributes:
        strategy: canonical strategy name.
        seed: run seed (initial random round, classifier, fine-tuning).
        rounds: one entry per round, in order.
        picks: (budget',) int64 pool rows in the order they were labelled.
        seconds: wall-clock time of the run.
    """

    strategy: str
    seed: int
    rounds: list[RoundScore]
    picks: np.ndarray
    seconds: float


class _Embedder:
    """The evolving embedding of one run: a private copy of the head, re-applied on demand."""

    def __init__(self, net: EmbeddingNet) -> None:
        # Features are cached, so the backbone never runs here: copy only the head.
        self.net = EmbeddingNet(nn.Identity(), copy.deepcopy(net.head))

    def embed(self, features: np.ndarray) -> np.ndarray:
        """(N, F) backbone features -> (N, D) unit-norm embeddings."""
        return embed_from_features(self.net, features)


@dataclass
class _RunState:
    """What one run carries from round to round."""

    embedder: _Embedder
    labeled: np.ndarray  # (N_pool,) bool
    picks: list[int] = field(default_factory=list)
    last_tuned: int = 0  # label count at the last fine-tuning
    x_pool: np.ndarray | None = None  # (N_pool, D) current pool embedding
    clf: TrainedClassifier | None = None
    # The classifiers whose probabilities are averaged (the ensemble; [clf] for one model).
    models: list[TrainedClassifier] = field(default_factory=list)


def _can_finetune(labels: np.ndarray) -> bool:
    """Triplet training needs >= 2 classes with >= 2 labelled crops each."""
    return int(np.sum(np.bincount(labels) >= 2)) >= 2


def _finetune(state: _RunState, pool: CropFeatures, config: LoopConfig, seed: int) -> bool:
    """Tune the head on the labelled rows (plain + augmented views); False if impossible.

    Like the product, training continues from the current head, not from the start.
    """
    rows = np.asarray(state.picks, dtype=np.int64)
    y = pool.labels[rows]
    if not _can_finetune(y):
        return False
    x = np.concatenate([pool.features[rows], *[view[rows] for view in pool.views]])
    labels = np.tile(y, 1 + pool.views.shape[0])
    train_config = TrainConfig(
        mode="head",
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        seed=seed,
        class_balance=config.class_balance,
    )
    train_head(state.embedder.net, x, labels, config=train_config)
    state.last_tuned = len(state.picks)
    state.models = []  # older rounds' classifiers do not fit the new embedding
    return True


def _pick(
    strategy: str, state: _RunState, pool: CropFeatures, config: LoopConfig, n_new: int, seed: int
) -> np.ndarray:
    """Run the strategy for ``n_new`` rows; uncertainty strategies see top-5 probabilities."""
    assert state.x_pool is not None and state.clf is not None, "round 0 is random"
    # Top-5 rows: what the product stores and hands to select() as well (of the ensemble's
    # mean where there is one, as the product stores).
    if len(state.models) > 1:
        mean = _probability_matrix(state.models, state.x_pool, len(pool.label_names))
        probabilities = -np.sort(-mean, axis=1)[:, :5].astype(np.float32)
    else:
        probabilities = classifier_predict(state.clf, state.x_pool).top_probs
    space = state.x_pool if config.selection_space == "embedding" else pool.features
    selection = all_strategies()[strategy](
        space,
        labeled_mask=state.labeled,
        budget=n_new,
        random_state=seed,
        probabilities=probabilities,
    )
    picks: np.ndarray = selection.indices
    return picks


def _round_seed(seed: int, round_index: int) -> int:
    """Distinct, reproducible seed per (run seed, round)."""
    return (seed * 1_000_003 + round_index * 7919) % 2**31


def run_loop(
    strategy: str,
    pool: CropFeatures,
    test: CropFeatures,
    *,
    net: EmbeddingNet,
    config: LoopConfig,
    seed: int,
) -> RunResult:
    """Simulate labelling ``pool`` with ``strategy``, scoring on ``test`` after each round.

    Each round: add labels (round 0: ``init`` uniform random rows; later: ``step`` rows
    chosen by the strategy), fine-tune the head if ``finetune_every`` labels arrived
    since the last time, re-embed pool and test, retrain the classifier on every label so
    far, score it on the test set.

    Args:
        strategy: canonical strategy name (``resolve_strategy``).
        pool, test: crops with backbone features; same ``label_names``.
        net: the starting embedding; only its head is used (copied, never modified).
        config: rounds, budget, fine-tuning and selection space.
        seed: run seed >= 0.

    Returns:
        RunResult with one RoundScore per entry of ``config.schedule(len(pool))``.
    """
    started = time.perf_counter()
    state = _RunState(embedder=_Embedder(net), labeled=np.zeros(len(pool), dtype=bool))
    rounds = []
    for index, target in enumerate(config.schedule(len(pool))):
        n_new = target - int(state.labeled.sum())
        round_seed = _round_seed(seed, index)
        if index == 0:  # the product's first round is random
            new = STRATEGIES["random"](
                pool.features, labeled_mask=state.labeled, budget=n_new, random_state=seed
            ).indices
        else:
            new = _pick(strategy, state, pool, config, n_new, round_seed)
        state.labeled[new] = True
        state.picks += [int(i) for i in new]
        due = config.finetune_every and len(state.picks) - state.last_tuned >= config.finetune_every
        tuned = bool(due) and _finetune(state, pool, config, round_seed)
        scores = _fit_and_score(state, pool, test, seed, config)
        rounds.append(RoundScore(len(state.picks), scores, tuned))
    return RunResult(
        strategy=strategy,
        seed=seed,
        rounds=rounds,
        picks=np.asarray(state.picks, dtype=np.int64),
        seconds=time.perf_counter() - started,
    )


def _fit_and_score(
    state: _RunState, pool: CropFeatures, test: CropFeatures, seed: int, config: LoopConfig
) -> Scores:
    """Re-embed, retrain the classifier on every label so far, score it on the test set."""
    state.x_pool = state.embedder.embed(pool.features)
    x_test = state.embedder.embed(test.features)
    x, y = state.x_pool[state.labeled], pool.labels[state.labeled]
    if config.ensemble_mode == "versions":
        # One new model per round (the product's first member), averaged with older rounds'.
        state.clf = ensemble_train(
            x, y, random_state=seed, class_balance=config.class_balance, size=1
        )[0]
        state.models = [*state.models, state.clf][-config.ensemble_size :]
    else:
        # The product's ensemble: members with seeds seed, seed + 1, ... (``ensemble_train``).
        state.models = ensemble_train(
            x, y, random_state=seed, class_balance=config.class_balance, size=config.ensemble_size
        )
        state.clf = state.models[0]
    return evaluate(state.models, x_test, test.labels, test.seq_ids, len(pool.label_names))


def full_pool_scores(
    pool: CropFeatures,
    test: CropFeatures,
    *,
    net: EmbeddingNet,
    seeds: Sequence[int],
    class_balance: str = "none",
    ensemble_size: int = 1,
) -> list[Scores]:
    """The starting embedding (no fine-tuning) with a classifier trained on every pool label.

    One Scores per seed (the classifier's random_state; an ensemble of K is the product's
    ``ensemble_train``, seeds seed .. seed + K - 1: with one label set there are no older
    versions to average). Every seed trains on the same labels here, so with K > 1 the
    ensembles of consecutive seeds share members (seed s's member k is seed s + 1's member
    k - 1): their spread over seeds understates that of independent ensembles.
    """
    embedder = _Embedder(net)
    x_pool, x_test = embedder.embed(pool.features), embedder.embed(test.features)
    n_classes = len(pool.label_names)
    return [
        evaluate(
            ensemble_train(
                x_pool,
                pool.labels,
                random_state=seed,
                class_balance=class_balance,
                size=ensemble_size,
            ),
            x_test,
            test.labels,
            test.seq_ids,
            n_classes,
        )
        for seed in seeds
    ]


# --- Summaries ------------------------------------------------------------------------------


_METRICS: tuple[str, ...] = ("top1", "top5", "seq_top1", "f1_macro", "log_loss")


def _sd(values: np.ndarray) -> np.ndarray:
    """Sample standard deviation over axis 0 (0 for a single run)."""
    if values.shape[0] < 2:
        return np.zeros(values.shape[1:])
    sd: np.ndarray = values.std(axis=0, ddof=1)
    return sd


@dataclass(frozen=True)
class StrategySummary:
    """One strategy over all seeds.

    Attributes:
        strategy: canonical name.
        labels: (R,) label count after each round.
        values: metric name -> (S, R) per-seed values (S seeds, R rounds).
        seconds: total wall-clock time of its runs.
        per_species: (S, C) per-species accuracy after the last round, per seed (NaN for a
            species without test crops).
    """

    strategy: str
    labels: list[int]
    values: dict[str, np.ndarray]
    seconds: float
    per_species: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    def mean(self, metric: str) -> np.ndarray:
        """(R,) mean over seeds."""
        mean: np.ndarray = self.values[metric].mean(axis=0)
        return mean

    def sd(self, metric: str) -> np.ndarray:
        """(R,) sample standard deviation over seeds (0 with one seed)."""
        return _sd(self.values[metric])

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: labels, <metric>_mean / <metric>_sd lists and per-seed raw values."""
        out: dict[str, Any] = {"labels": self.labels}
        for metric in _METRICS:
            out[f"{metric}_mean"] = _rounded(self.mean(metric))
            out[f"{metric}_sd"] = _rounded(self.sd(metric))
        out["per_seed"] = {m: [_rounded(row) for row in self.values[m]] for m in _METRICS}
        # Per species after the last round (label index order; null: no test crop).
        out["per_species_mean"] = _nan_mean(self.per_species)
        out["per_species_sd"] = _nan_sd(self.per_species)
        out["seconds"] = round(self.seconds, 2)
        return out


def _rounded(values: np.ndarray) -> list[float]:
    return [round(float(v), 5) for v in values]


def _per_species(scores: Sequence[Scores]) -> np.ndarray:
    """(S, C) float64 per-species accuracy of S scores; NaN for None (no test crop)."""
    return np.array(
        [[np.nan if a is None else a for a in s.per_species] for s in scores], dtype=np.float64
    )


def _nan_mean(values: np.ndarray) -> list[float | None]:
    """Column means of (S, C), None for an all-NaN column (a species without test crops)."""
    if values.size == 0:
        return []
    return [None if np.isnan(c).all() else round(float(np.mean(c)), 5) for c in values.T]


def _nan_sd(values: np.ndarray) -> list[float | None]:
    if values.size == 0:
        return []
    return [None if np.isnan(c).all() else round(float(_sd(c[:, None])[0]), 5) for c in values.T]


def summarise(runs: Sequence[RunResult]) -> StrategySummary:
    """Stack the runs of one strategy (same schedule, different seeds).

    Raises:
        ValueError: no runs, mixed strategies or different label schedules.
    """
    if not runs or len({run.strategy for run in runs}) != 1:
        raise ValueError("summarise needs runs of exactly one strategy")
    labels = [r.n_labels for r in runs[0].rounds]
    if any([r.n_labels for r in run.rounds] != labels for run in runs):
        raise ValueError("runs have different label schedules")
    values = {
        metric: np.array([[getattr(r.scores, metric) for r in run.rounds] for run in runs])
        for metric in _METRICS
    }
    return StrategySummary(
        runs[0].strategy,
        labels,
        values,
        sum(run.seconds for run in runs),
        per_species=_per_species([run.rounds[-1].scores for run in runs]),
    )


# Neighbour count of the sparsity diagnostic (distance to the k-th nearest pool crop).
_SPARSITY_NEIGHBORS = 5


def _percentile_ranks(values: np.ndarray) -> np.ndarray:
    """(N,) rank of each value scaled to [0, 1] (0 smallest; ties broken by position)."""
    ranks = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    scaled: np.ndarray = ranks / max(values.size - 1, 1)
    return scaled


def _class_entropy(labels: np.ndarray, n_classes: int) -> float:
    """Entropy of the label histogram divided by log(C): 1 = all C classes equally often."""
    p = np.bincount(labels, minlength=n_classes) / max(labels.size, 1)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum() / np.log(n_classes)) if n_classes > 1 else 1.0


@dataclass(frozen=True)
class PickDiagnostics:
    """What a strategy labelled, averaged over seeds: why it helps or not.

    Attributes:
        labels: (R,) label count after each round.
        classes_covered: (R,) distinct classes among the labelled crops.
        sequences_covered: (R,) distinct capture sequences among them.
        class_entropy: (R,) normalised entropy of their class histogram (1 = balanced).
        sparsity_pct: mean percentile (0..1) of the picks' distance to their 5th nearest
            pool crop in the starting embedding; random picks average 0.5, outliers
            approach 1. Only the strategy's picks (after the random first round) count.
        size_pct: mean percentile (0..1) of the picks' crop size in pixels.
    """

    labels: list[int]
    classes_covered: np.ndarray
    sequences_covered: np.ndarray
    class_entropy: np.ndarray
    sparsity_pct: float
    size_pct: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "classes_covered": _rounded(self.classes_covered),
            "sequences_covered": _rounded(self.sequences_covered),
            "class_entropy": _rounded(self.class_entropy),
            "sparsity_pct": round(self.sparsity_pct, 4),
            "size_pct": round(self.size_pct, 4),
        }


def pick_diagnostics(
    runs: Sequence[RunResult], pool: CropFeatures, start_embedding: np.ndarray
) -> PickDiagnostics:
    """Coverage, balance, sparsity and box size of the crops the runs labelled.

    Args:
        runs: the runs of one strategy (same schedule).
        pool: the pool they labelled.
        start_embedding: (N_pool, D) starting embedding of the pool (sparsity is measured
            there, so strategies are compared on one scale).
    """
    labels = [r.n_labels for r in runs[0].rounds]
    n_classes = len(pool.label_names)
    sparsity = _percentile_ranks(knn_radius(start_embedding, n_neighbors=_SPARSITY_NEIGHBORS))
    size = _percentile_ranks(pool.crop_pixels.astype(np.float64))
    per_run = np.array(
        [
            [
                (
                    np.unique(pool.labels[run.picks[:n]]).size,
                    np.unique(pool.seq_ids[run.picks[:n]]).size,
                    _class_entropy(pool.labels[run.picks[:n]], n_classes),
                )
                for n in labels
            ]
            for run in runs
        ]
    )  # (S, R, 3)
    chosen = np.concatenate([run.picks[labels[0] :] for run in runs])
    mean = per_run.mean(axis=0)
    return PickDiagnostics(
        labels=labels,
        classes_covered=mean[:, 0],
        sequences_covered=mean[:, 1],
        class_entropy=mean[:, 2],
        sparsity_pct=float(sparsity[chosen].mean()) if chosen.size else float("nan"),
        size_pct=float(size[chosen].mean()) if chosen.size else float("nan"),
    )


@dataclass(frozen=True)
class ExperimentResult:
    """A whole benchmark: every strategy over every seed, plus the full-pool reference.

    Attributes:
        summaries: strategy -> its summary, in the order requested.
        runs: strategy -> its per-seed runs (for diagnostics such as the picks).
        diagnostics: strategy -> what its picks look like (``pick_diagnostics``).
        full_pool: one Scores per seed for the starting embedding trained on the whole pool.
        config: the loop configuration.
        seeds: the run seeds.
        seconds: total wall-clock time.
    """

    summaries: dict[str, StrategySummary]
    runs: dict[str, list[RunResult]]
    diagnostics: dict[str, PickDiagnostics]
    full_pool: list[Scores]
    config: LoopConfig
    seeds: list[int]
    seconds: float
    species: list[str] = field(default_factory=list)

    def full_pool_mean(self, metric: str) -> float:
        return float(np.mean([getattr(s, metric) for s in self.full_pool]))

    def full_pool_sd(self, metric: str) -> float:
        return float(_sd(np.array([[getattr(s, metric)] for s in self.full_pool]))[0])

    def to_dict(self) -> dict[str, Any]:
        """The benchmark JSON: strategies, full_pool_top1/top5 (+ seq), params, seconds."""
        strategies = {
            name: {
                **s.to_dict(),
                "diagnostics": self.diagnostics[name].to_dict(),
                # Pool rows in labelling order, per seed: enough to redo any analysis.
                "picks": [run.picks.tolist() for run in self.runs[name]],
            }
            for name, s in self.summaries.items()
        }
        return {
            "strategies": strategies,
            "full_pool_top1": round(self.full_pool_mean("top1"), 5),
            "full_pool_top5": round(self.full_pool_mean("top5"), 5),
            "full_pool_seq_top1": round(self.full_pool_mean("seq_top1"), 5),
            "full_pool_f1_macro": round(self.full_pool_mean("f1_macro"), 5),
            "full_pool_log_loss": round(self.full_pool_mean("log_loss"), 5),
            "full_pool_sd": {m: round(self.full_pool_sd(m), 5) for m in _METRICS},
            "full_pool_per_species": _nan_mean(_per_species(self.full_pool)),
            "full_pool_per_species_sd": _nan_sd(_per_species(self.full_pool)),
            "species": self.species,
            "params": {**dataclasses.asdict(self.config), "seeds": self.seeds},
            "seconds": round(self.seconds, 2),
        }


def run_benchmark(
    strategies: Sequence[str],
    pool: CropFeatures,
    test: CropFeatures,
    *,
    net: EmbeddingNet,
    config: LoopConfig,
    seeds: Sequence[int],
    progress: Callable[[RunResult], None] | None = None,
) -> ExperimentResult:
    """Run every strategy with every seed; ``progress`` is called after each run.

    Raises:
        ValueError: unknown strategy (or ``default``), or pool and test with different label
        names.
    """
    if pool.label_names != test.label_names:
        raise ValueError("pool and test must share the same categories (label_names)")
    started = time.perf_counter()
    names = [resolve_strategy(name) for name in strategies]
    if DEFAULT_RULE in names:  # the rule needs the product's settings: experiment_product
        raise ValueError(f"strategy {DEFAULT_RULE!r} runs in the product loop only")
    runs: dict[str, list[RunResult]] = {}
    for name in names:
        for seed in seeds:
            run = run_loop(name, pool, test, net=net, config=config, seed=seed)
            runs.setdefault(name, []).append(run)
            if progress is not None:
                progress(run)
    start = _Embedder(net).embed(pool.features)
    return ExperimentResult(
        summaries={name: summarise(r) for name, r in runs.items()},
        runs=runs,
        diagnostics={name: pick_diagnostics(r, pool, start) for name, r in runs.items()},
        full_pool=full_pool_scores(
            pool,
            test,
            net=net,
            seeds=seeds,
            class_balance=config.class_balance,
            ensemble_size=config.ensemble_size,
        ),
        config=config,
        seeds=list(seeds),
        seconds=time.perf_counter() - started,
        species=list(pool.label_names),
    )
