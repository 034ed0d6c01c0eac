"""Which crop geometry the product defaults to: box vs square, and how much context.

``python -m benchmarks crop_geometry``: the learning-core protocol (``benchmarks.learning_core``:
missouri-dev, 3 rotated sequence folds, 3 seeds of random labels at 100, 300 and all labels,
EfficientNet-Lite0 ImageNet features) run once per geometry (``detector.crops.crop_rect``), each
with its own crops and features: the PCA head, logistic regression (``CANDIDATES``), calibrated,
crop by crop ("crop-only") and pooled over the capture event ("stored", what the product
stores). ``value`` is the stored crop top-1 at 300 labels of the product's default geometry,
``baseline`` the best other geometry's.
"""

from __future__ import annotations

import sys
import time

import numpy as np

from activelearn.classifier import classifier_probabilities, classifier_train
from activelearn.events import event_probabilities_combine
from activelearn.experiment_data import crop_features
from activelearn.experiment_product import sequence_folds
from activelearn.linear import temper
from benchmarks._result import BENCH_DIR, result_write
from benchmarks.learning_core import BUDGETS, DATA, FOLDS, SEEDS, _choose, _full, _unit
from embeddings.model import build_embedding_net
from embeddings.projection import pca_projection_fit

# The retrain's candidates, less the MLP: the learning-core benchmark saw the retrain keep
# logistic regression in all 27 (fold, seed, budget) runs, and the MLP's cross-validation is
# most of the time on a 2-core machine. The temperature is still fitted as the retrain does
# (it moves the event mean, so it can change the stored label).
CANDIDATES = ("logistic",)

# (shape, padding) pairs measured; the first is the product's default (Project.crop_shape and
# Project.crop_padding).
GEOMETRIES: tuple[tuple[str, float], ...] = (
    ("box", 0.1),
    ("square", 0.1),
    ("square", 0.25),
    ("box", 0.25),
)


def _geometry_run(shape: str, padding: float) -> dict[str, dict[str, list[float]]]:
    """results[config][budget] -> per fold, the mean over seeds, for one crop geometry."""
    net, info = build_embedding_net(backbone="efficientnet_lite0", weights="imagenet", seed=0)
    crops = crop_features(
        DATA / "annotations.json",
        DATA,
        net=net,
        info=info,
        cache_dir=BENCH_DIR / "learning-core",
        padding=padding,
        shape=shape,
    )
    features, labels, seqs = crops.features, crops.labels, crops.seq_ids
    n_classes = len(crops.label_names)
    embedded = _unit(pca_projection_fit(features, dim=256, seed=0).apply(features))
    fold = sequence_folds(labels, seqs, n_folds=FOLDS)
    results: dict[str, dict[str, list[float]]] = {}

    def record(config: str, budget: int, f: int, value: float) -> None:
        per_fold = results.setdefault(config, {}).setdefault(str(budget), [0.0] * FOLDS)
        per_fold[f] += value / SEEDS

    for budget in BUDGETS:
        for f in range(FOLDS):
            test, pool = fold == f, np.flatnonzero(fold != f)
            for seed in range(SEEDS):
                rows = pool
                if budget and budget < pool.size:
                    rows = np.random.default_rng(seed).choice(pool, budget, replace=False)
                truth = labels[test]
                backend, t = _choose(embedded[rows], labels[rows], seqs[rows], seed, CANDIDATES)
                clf = classifier_train(
                    embedded[rows], labels[rows], random_state=seed, backend=backend
                )
                probs = _full(
                    temper(classifier_probabilities(clf, embedded[test]), t), clf.classes, n_classes
                )
                record("crop-only", budget, f, float((probs.argmax(1) == truth).mean()))
                combined = event_probabilities_combine(probs, seqs[test]).probabilities
                record("stored", budget, f, float((combined.argmax(1) == truth).mean()))
        print(f"{shape} {padding}: budget {budget or 'all'} done", file=sys.stderr, flush=True)
    return results


def main() -> None:
    if not (DATA / "annotations.json").exists():
        print(f"crop_geometry: skipped, {DATA} is missing", file=sys.stderr)
        return
    started = time.perf_counter()
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for shape, padding in GEOMETRIES:
        name = f"{shape} {padding}"
        table[name] = {
            config: {
                budget: {"mean": float(np.mean(v)), "worst": float(np.min(v))}
                for budget, v in by_budget.items()
            }
            for config, by_budget in _geometry_run(shape, padding).items()
        }
        for config, by_budget in table[name].items():
            cells = {b: f"{m['mean']:.3f}/{m['worst']:.3f}" for b, m in by_budget.items()}
            print(name, config, cells, flush=True)
    default = f"{GEOMETRIES[0][0]} {GEOMETRIES[0][1]}"
    others = {k: v["stored"]["300"]["mean"] for k, v in table.items() if k != default}
    best_other = max(others, key=others.__getitem__)
    result_write(
        name="crop_geometry",
        unit="stored crop top-1 at 300 labels, default geometry",
        value=table[default]["stored"]["300"]["mean"],
        baseline_name=f"best other geometry ({best_other})",
        baseline=others[best_other],
        params={
            "folds": FOLDS,
            "seeds": SEEDS,
            "budgets": [b or "all" for b in BUDGETS],
            "backbone": "efficientnet_lite0",
            "geometries": [list(g) for g in GEOMETRIES],
            "seconds": time.perf_counter() - started,
        },
        extra={"table": table},
    )


if __name__ == "__main__":
    main()
