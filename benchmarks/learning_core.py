"""The learning core on rotated folds of missouri-dev: what each choice of issue 15 buys.

``python -m benchmarks learning_core`` (also in ``make bench``). The crops of
``../shared/data/missouri-dev`` (CDLA-Permissive-1.0) are split by capture sequence into 3 folds
(within each species, sequence rank r goes to fold (r - 1) mod 3); each fold is the test once,
the other two the pool. From the pool, 3 seeds of random labels at each budget (100, 300, all).
Every configuration calls the product's own functions (``embeddings.projection``,
``activelearn.classifier``, ``activelearn.linear``, ``activelearn.evaluation``,
``activelearn.events``) on EfficientNet-Lite0 features of the same crops:

* ``reference``: the linear probe: class-balanced logistic regression on the raw, L2-normalised
  backbone features, crop by crop;
* ``before``: what a retrain did before issue 15: a seeded random 256-d head, the (150, 100)
  MLP, crop by crop;
* ``product crop-only``: the PCA head, the classifier a retrain keeps (logistic regression or the
  MLP, by grouped cross-validation on the labels), calibrated, crop by crop;
* ``product``: the same, each crop's probabilities combined with its capture event's, as the
  product stores them.

``value`` is the product's crop top-1 at 300 labels (mean over folds and seeds), ``baseline``
the reference's; per budget and configuration the JSON keeps the mean and the worst fold.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

from activelearn.choice import CANDIDATES, classifier_choose
from activelearn.classifier import (
    TrainedClassifier,
    classifier_probabilities,
    classifier_train,
)
from activelearn.evaluation import EvaluationError
from activelearn.events import event_probabilities_combine
from activelearn.experiment_data import crop_features
from activelearn.experiment_product import sequence_folds
from activelearn.linear import temper
from benchmarks._result import BENCH_DIR, fold_table, result_write
from embeddings.model import build_embedding_net
from embeddings.projection import pca_projection_fit

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data" / "missouri-dev"
FOLDS, SEEDS, BUDGETS = 3, 3, (100, 300, 0)  # 0: every pool label


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _full(probs: np.ndarray, classes: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((probs.shape[0], n_classes), dtype=np.float32)
    out[:, classes] = probs
    return out


def _choose(
    x: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    seed: int,
    candidates: tuple[str, ...] = CANDIDATES,
) -> tuple[str, float]:
    """The retrain's rule (``activelearn.choice``): its kept backend and temperature."""
    try:
        choice = classifier_choose(
            x, y, groups=groups, random_state=seed, candidates=candidates, n_splits=5
        )
    except EvaluationError:
        return candidates[0], 1.0
    return choice.backend, choice.temperature


def run() -> dict[str, dict[str, list[float]]]:
    net, info = build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)
    crops = crop_features(
        DATA / "annotations.json", DATA, net=net, info=info, cache_dir=BENCH_DIR / "learning-core"
    )
    features, labels, seqs = crops.features, crops.labels, crops.seq_ids
    n_classes = len(crops.label_names)
    raw = _unit(features)
    pca = pca_projection_fit(features, dim=256, seed=0)
    embedded = _unit(pca.apply(features))
    rng_head = np.random.default_rng(0).normal(size=(features.shape[1], 256)) / np.sqrt(
        features.shape[1]
    )
    seeded = _unit(features @ rng_head).astype(np.float32)
    fold = sequence_folds(labels, seqs, n_folds=FOLDS)  # al_benchmark --folds rotates the same
    # results[config][budget] -> per fold, the mean over seeds
    results: dict[str, dict[str, list[float]]] = {}

    def record(config: str, budget: int, f: int, value: float) -> None:
        per_fold = results.setdefault(config, {}).setdefault(str(budget), [0.0] * FOLDS)
        per_fold[f] += value / SEEDS

    for budget in BUDGETS:
        for f in range(FOLDS):
            test = fold == f
            for seed in range(SEEDS):
                pool = np.flatnonzero(fold != f)
                rows = pool
                if budget and budget < pool.size:
                    rows = np.random.default_rng(seed).choice(pool, budget, replace=False)
                y, truth = labels[rows], labels[test]
                ref = classifier_train(raw[rows], y, random_state=seed, backend="logistic")
                record("reference", budget, f, _top1(ref, raw[test], truth))
                old = classifier_train(seeded[rows], y, random_state=seed)
                record("before", budget, f, _top1(old, seeded[test], truth))
                backend, t = _choose(embedded[rows], y, seqs[rows], seed)
                clf = classifier_train(embedded[rows], y, random_state=seed, backend=backend)
                probs = _full(
                    temper(classifier_probabilities(clf, embedded[test]), t), clf.classes, n_classes
                )
                record("product crop-only", budget, f, float((probs.argmax(1) == truth).mean()))
                combined = event_probabilities_combine(probs, seqs[test]).probabilities
                record("product", budget, f, float((combined.argmax(1) == truth).mean()))
                record(f"chose {backend}", budget, f, 1.0)
            print(f"budget {budget or 'all'} fold {f} done", file=sys.stderr, flush=True)
    return results


def _top1(clf: TrainedClassifier, x: np.ndarray, truth: np.ndarray) -> float:
    probs = classifier_probabilities(clf, x)
    return float((clf.classes[probs.argmax(axis=1)] == truth).mean())


def main() -> None:
    if not (DATA / "annotations.json").exists():
        print(f"learning_core: skipped, {DATA} is missing", file=sys.stderr)
        return
    started = time.perf_counter()
    results = run()
    table = fold_table(results)
    result_write(
        name="learning_core",
        unit="crop top-1 at 300 labels",
        value=table["product"]["300"]["mean"],
        baseline_name="linear probe on raw Lite0 features, same labels",
        baseline=table["reference"]["300"]["mean"],
        params={
            "folds": FOLDS,
            "seeds": SEEDS,
            "budgets": [b or "all" for b in BUDGETS],
            "backbone": "efficientnet_lite0",
            "seconds": time.perf_counter() - started,
        },
        extra={"table": table},
    )


if __name__ == "__main__":
    main()
