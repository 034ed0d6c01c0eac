"""Selection strategies and the default rule on rotated folds of missouri-dev.

``python -m benchmarks selection_rule``. The crops of ``../shared/data/missouri-dev``
(CDLA-Permissive-1.0), EfficientNet-Lite0 features, are split by capture sequence into 3 folds
as ``learning_core`` does (within each species, sequence rank r goes to fold (r - 1) mod 3);
each fold is the test once, the other two the pool. Each seed drops a random 10% of the pool
(so that deterministic strategies vary between seeds too), then labels rounds of 20 up to 300:
the first round random (the product's first-round default) unless the strategy says otherwise,
every later one by the strategy. The embedding is the PCA-256 head of the L2-normalised
features (fitted on the pool), the classifier the product's balanced logistic regression
(``activelearn.linear.logistic_fit``) retrained after every round; margin reads its
probabilities combined over the capture event, as the product stores them
(``activelearn.events``). Scored: crop top-1 on the test fold at 100, 200 and 300 labels, mean
over folds and worst fold (each fold the mean of its seeds).

Strategies: the product's ``random``, ``k_center``, ``margin``, ``typical``; ``default``: the
rule (``activelearn.selection_rule.strategy_for_round``) after a random first round, as a new
project runs it; ``default, typical first``: the rule from the first round.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from activelearn.events import event_probabilities_combine
from activelearn.experiment_data import crop_features
from activelearn.experiment_product import sequence_folds
from activelearn.linear import LogisticModel, logistic_fit
from activelearn.selection import select
from activelearn.selection_rule import strategy_for_round
from benchmarks._result import BENCH_DIR, fold_table, result_write
from benchmarks.learning_core import DATA, FOLDS, _unit
from embeddings.model import build_embedding_net
from embeddings.projection import pca_projection_fit

SEEDS, STEP, BUDGETS, DROP = 10, 20, (100, 200, 300), 0.1
STRATEGIES = ("random", "k_center", "margin", "typical", "default", "default, typical first")


def _name(strategy: str, *, n_labels: int, n_species: int, model: LogisticModel | None) -> str:
    """The product strategy a round of ``strategy`` runs with ``n_labels`` so far."""
    rule = strategy.startswith("default")
    if n_labels == 0 and strategy != "default, typical first":
        return "random"  # the product's first round
    if rule:
        return strategy_for_round(
            n_labels=n_labels,
            n_crops=10**6,
            n_species=n_species,
            has_classifier=model is not None,
        ).strategy
    return "random" if strategy == "margin" and model is None else strategy


def _run(
    strategy: str,
    x: np.ndarray,
    y: np.ndarray,
    events: np.ndarray,
    test: tuple[np.ndarray, ...],
    seed: int,
) -> list[float]:
    """Crop top-1 on ``test`` (features, labels) at each of BUDGETS for one pool."""
    n_species = int(max(y.max(), test[1].max())) + 1
    labelled = np.zeros(y.size, dtype=bool)
    model: LogisticModel | None = None
    classes = np.empty(0, dtype=np.int64)
    scores: list[float] = []
    for round_index in range(max(BUDGETS) // STEP):
        n_labels = int(labelled.sum())
        name = _name(strategy, n_labels=n_labels, n_species=n_species, model=model)
        probs = None
        if name == "margin" and model is not None:
            full = np.zeros((y.size, n_species), dtype=np.float32)
            full[:, classes] = model.predict_proba(x)
            probs = event_probabilities_combine(full, events).probabilities
        picked = select(
            name,
            x,
            labeled_mask=labelled,
            budget=STEP,
            random_state=1000 * seed + round_index,
            probabilities=probs,
        )
        labelled[picked.indices] = True
        classes = np.unique(y[labelled])
        if classes.size >= 2:
            model, _, _ = logistic_fit(x[labelled], np.searchsorted(classes, y[labelled]))
        if int(labelled.sum()) in BUDGETS and model is not None:
            predicted = classes[model.predict_proba(test[0]).argmax(axis=1)]
            scores.append(float((predicted == test[1]).mean()))
    return scores


def run() -> dict[str, dict[str, list[float]]]:
    """results[strategy][budget]: crop top-1 per fold (mean over seeds)."""
    net, info = build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)
    crops = crop_features(
        DATA / "annotations.json", DATA, net=net, info=info, cache_dir=BENCH_DIR / "learning-core"
    )
    labels, seqs = crops.labels, crops.seq_ids
    raw = _unit(crops.features.astype(np.float64))
    fold = sequence_folds(labels, seqs, n_folds=FOLDS)
    results = {s: {str(b): [0.0] * FOLDS for b in BUDGETS} for s in STRATEGIES}
    for f in range(FOLDS):
        pool_all, test = np.flatnonzero(fold != f), np.flatnonzero(fold == f)
        x_all = _unit(pca_projection_fit(raw[pool_all], dim=256, seed=0).apply(raw))
        for seed in range(SEEDS):
            keep = np.random.default_rng(10_000 + seed).random(pool_all.size) >= DROP
            pool = pool_all[keep]
            for strategy in STRATEGIES:
                scores = _run(
                    strategy,
                    x_all[pool],
                    labels[pool],
                    seqs[pool],
                    (x_all[test], labels[test]),
                    seed,
                )
                for budget, score in zip(BUDGETS, scores, strict=True):
                    results[strategy][str(budget)][f] += score / SEEDS
        print(f"fold {f} done", file=sys.stderr, flush=True)
    return results


def main() -> None:
    if not (DATA / "annotations.json").exists():
        print(f"selection_rule: skipped, {DATA} is missing", file=sys.stderr)
        return
    started = time.perf_counter()
    results = run()
    table = fold_table(results)
    result_write(
        name="selection_rule",
        unit="crop top-1 at 100 labels, worst fold",
        value=table["default"]["100"]["worst"],
        baseline_name="random selection, same folds and seeds",
        baseline=table["random"]["100"]["worst"],
        params={
            "folds": FOLDS,
            "seeds": SEEDS,
            "pool_drop": DROP,
            "round": STEP,
            "budgets": list(BUDGETS),
            "backbone": "efficientnet_lite0",
            "seconds": time.perf_counter() - started,
        },
        extra={"table": table},
    )


if __name__ == "__main__":
    main()
