"""Which offline backbone (or concatenation) knows the species best: a linear probe per config.

``python -m benchmarks backbone_probe`` (also in ``make bench``). The crops of
``../shared/data/missouri-dev`` are split by capture sequence into the same 3 rotated folds as
``learning_core`` (each fold the test once, the other two the pool); from the pool, 3 seeds of
random labels at 100, 300 and all labels. For each backbone, features of every crop
(``activelearn.experiment_data.crop_features``, cached under ``var/bench/backbone-probe``),
then the linear probe of issue 15 (class-balanced logistic regression, ``activelearn.linear``,
on L2-normalised inputs), crop top-1 on the test fold:

* ``raw``: on the backbone's raw features (a concatenation: each part's features
  L2-normalised, side by side, as ``embeddings.backbones.ConcatFeatures`` computes them; here
  from each part's cached features, i.e. each part on the crop resized straight to its own
  input size);
* ``pca256``: on the 256-d PCA head the product fits on the pool's crops
  (``embeddings.projection``), what FAISS, k-Center and the classifier see.

Concatenations: every combination of two or more of the offline backbones. ``value`` is the
best configuration's raw probe at 300 labels (mean over folds), ``baseline`` EfficientNet-Lite0's
in the same run; the JSON keeps, per configuration, budget and probe, the mean and worst fold.
"""

from __future__ import annotations

import itertools
import sys
import time

import numpy as np

from activelearn.classifier import classifier_train
from activelearn.experiment_data import CropFeatures, crop_features
from benchmarks._result import BENCH_DIR, result_write
from benchmarks.learning_core import DATA, FOLDS, SEEDS, _folds, _top1, _unit
from embeddings.backbones import CONCAT_PREFIX
from embeddings.model import build_embedding_net
from embeddings.projection import pca_projection_fit

SINGLES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2")
BUDGETS = (100, 300, 0)  # 0: every pool label
BASELINE = "efficientnet_lite0"


def backbone_crops(name: str) -> CropFeatures:
    """Features of every labelled crop of missouri-dev by backbone ``name`` (cached)."""
    started = time.perf_counter()
    net, info = build_embedding_net(backbone=name, weights="imagenet", seed=0)
    crops = crop_features(
        DATA / "annotations.json", DATA, net=net, info=info, cache_dir=BENCH_DIR / "backbone-probe"
    )
    print(f"{name}: {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    return crops


def single_features() -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Raw (N, 1280) features of every crop per single backbone; labels (N,); seq ids (N,)."""
    features: dict[str, np.ndarray] = {}
    labels = seqs = np.empty(0)
    for name in SINGLES:
        crops = backbone_crops(name)
        features[name], labels, seqs = crops.features, crops.labels, crops.seq_ids
    return features, labels, seqs


def configurations(singles: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Every single backbone (raw) and every concatenation of 2+ (unit blocks side by side)."""
    configs = dict(singles)
    for k in range(2, len(SINGLES) + 1):
        for parts in itertools.combinations(SINGLES, k):
            name = CONCAT_PREFIX + "+".join(parts)
            configs[name] = np.hstack([_unit(singles[p]) for p in parts]).astype(np.float32)
    return configs


def probe(
    features: np.ndarray, labels: np.ndarray, fold: np.ndarray
) -> dict[str, dict[str, list[float]]]:
    """{probe: {budget: [top-1 per fold, mean over seeds]}} for one configuration."""
    out: dict[str, dict[str, list[float]]] = {"raw": {}, "pca256": {}}
    raw = _unit(features)
    for f in range(FOLDS):
        test, pool = fold == f, np.flatnonzero(fold != f)
        # The product fits its head on every crop it has, labelled or not: here the pool's.
        pca = pca_projection_fit(features[pool], dim=256, seed=0)
        embedded = _unit(pca.apply(features))
        for budget in BUDGETS:
            for seed in range(SEEDS):
                rows = pool
                if budget and budget < pool.size:
                    rows = np.random.default_rng(seed).choice(pool, budget, replace=False)
                for key, x in (("raw", raw), ("pca256", embedded)):
                    clf = classifier_train(
                        x[rows], labels[rows], random_state=seed, backend="logistic"
                    )
                    per_fold = out[key].setdefault(str(budget or "all"), [0.0] * FOLDS)
                    per_fold[f] += _top1(clf, x[test], labels[test]) / SEEDS
    return out


def _summary(results: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean and worst fold of each probe and budget."""
    return {
        key: {b: {"mean": float(np.mean(v)), "worst": float(np.min(v))} for b, v in r.items()}
        for key, r in results.items()
    }


def main() -> None:
    if not (DATA / "annotations.json").exists():
        print(f"backbone_probe: skipped, {DATA} is missing", file=sys.stderr)
        return
    started = time.perf_counter()
    singles, labels, seqs = single_features()
    fold = _folds(labels, seqs)
    table: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for name, features in configurations(singles).items():
        table[name] = _summary(probe(features, labels, fold))
        cells = " ".join(
            f"{key}@{b} {m['mean']:.3f}/{m['worst']:.3f}"
            for key, r in table[name].items()
            for b, m in r.items()
        )
        print(f"{name}: {cells}", flush=True)
    best = max(table, key=lambda n: table[n]["raw"]["300"]["mean"])
    best_concat = max(
        (n for n in table if n.startswith(CONCAT_PREFIX)),
        key=lambda n: table[n]["raw"]["300"]["mean"],
    )
    # The best concatenation once more, as the product computes it (one ConcatFeatures net:
    # every part fed from the input at the largest part's size).
    crops = backbone_crops(best_concat)
    np.testing.assert_array_equal(crops.labels, labels)  # same crops, same order
    product = probe(crops.features, labels, fold)
    table[f"{best_concat} (ConcatFeatures)"] = _summary(product)
    result_write(
        name="backbone_probe",
        unit="crop top-1 at 300 labels, linear probe on raw features (mean of 3 folds)",
        value=table[best]["raw"]["300"]["mean"],
        baseline_name=f"the same probe on {BASELINE} features, same labels",
        baseline=table[BASELINE]["raw"]["300"]["mean"],
        params={
            "best": best,
            "best_concatenation": best_concat,
            "folds": FOLDS,
            "seeds": SEEDS,
            "budgets": [b or "all" for b in BUDGETS],
            "crops": int(labels.size),
            "seconds": time.perf_counter() - started,
        },
        extra={"table": table},
    )


if __name__ == "__main__":
    main()
