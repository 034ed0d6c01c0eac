"""Which offline backbone (or concatenation) knows the species best: a linear probe per config.

``python -m benchmarks backbone_probe`` (also in ``make bench``). The crops of
``../shared/data/missouri-dev`` are split by capture sequence into the same 3 rotated folds as
``learning_core`` (each fold the test once, the other two the pool); from the pool, 3 seeds of
random labels at 100, 300 and all labels. For each backbone, features of every crop
(``activelearn.experiment_data.crop_features``, cached under ``var/bench/backbone-probe``),
then the linear probe of issue 15 (class-balanced logistic regression, ``activelearn.linear``,
on the L2-normalised raw features), crop top-1 on the test fold. A concatenation's features are
each part's features L2-normalised, side by side, as ``embeddings.backbones.ConcatFeatures``
computes them; here from each part's cached features, i.e. each part on the crop resized
straight to its own input size; ``concat_agreement`` checks on every 10th crop how close that
is to the product's ``ConcatFeatures``, which feeds every part from the input at the largest
part's size.

Concatenations: the ``CONCATS`` below. With every pool label the fit is the same for every seed,
so it is fitted once. ``value`` is the best configuration's raw probe at 300 labels (mean over
folds), ``baseline`` EfficientNet-Lite0's in the same run; the JSON keeps, per configuration,
budget and probe, the mean and worst fold.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from activelearn.classifier import classifier_train
from activelearn.experiment_data import CropFeatures, crop_features
from activelearn.experiment_product import sequence_folds
from benchmarks._result import BENCH_DIR, result_write
from benchmarks.learning_core import DATA, FOLDS, SEEDS, _top1, _unit
from embeddings.backbones import CONCAT_PREFIX
from embeddings.cocodata import coco_crops
from embeddings.model import build_embedding_net
from embeddings.training import backbone_features

SINGLES = ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "mobilenet_v2")
AGREEMENT_STEP = 10  # concat_agreement: every 10th crop
BUDGETS = (100, 300, 0)  # 0: every pool label
BASELINE = "efficientnet_lite0"
# Concatenations probed (each fit takes seconds on a 2-core machine, so not all 11): all four
# (issue 15's), the three Lites, and the smallest and largest Lite with MobileNetV2.
CONCATS: tuple[tuple[str, ...], ...] = (
    SINGLES,
    ("efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"),
    ("efficientnet_lite0", "mobilenet_v2"),
    ("efficientnet_lite2", "mobilenet_v2"),
)


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
    """Every single backbone (raw) and each of ``CONCATS`` (unit blocks side by side)."""
    configs = dict(singles)
    for parts in CONCATS:
        name = CONCAT_PREFIX + "+".join(parts)
        configs[name] = np.hstack([_unit(singles[p]) for p in parts]).astype(np.float32)
    return configs


def probe(features: np.ndarray, labels: np.ndarray, fold: np.ndarray) -> dict[str, list[float]]:
    """{budget: [top-1 per fold, mean over seeds]} of the linear probe on ``features``. With
    every pool label the seeds draw the same rows and the fit is deterministic, so that
    budget is fitted once per fold."""
    out: dict[str, list[float]] = {}
    x = _unit(features)
    for f in range(FOLDS):
        test, pool = fold == f, np.flatnonzero(fold != f)
        for budget in BUDGETS:
            seeds = range(SEEDS) if budget and budget < pool.size else range(1)
            for seed in seeds:
                rows = pool
                if budget and budget < pool.size:
                    rows = np.random.default_rng(seed).choice(pool, budget, replace=False)
                clf = classifier_train(x[rows], labels[rows], random_state=seed, backend="logistic")
                per_fold = out.setdefault(str(budget or "all"), [0.0] * FOLDS)
                per_fold[f] += _top1(clf, x[test], labels[test]) / len(seeds)
    return out


def concat_agreement(name: str, singles: dict[str, np.ndarray]) -> dict[str, float]:
    """How close ``ConcatFeatures`` (the product's concatenation: parts fed from the input at
    the largest part's size) is to the parts' features computed alone (each from the crop
    resized straight to its own size, as probed above): per part, the min and mean cosine over
    every ``AGREEMENT_STEP``-th crop."""
    net, info = build_embedding_net(backbone=name, weights="imagenet", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = coco_crops(DATA / "annotations.json", DATA, out_dir=Path(tmp)).paths
        rows = np.arange(0, len(paths), AGREEMENT_STEP)
        together = backbone_features(net, [paths[i] for i in rows], info=info)
    out, start = {}, 0
    for part in name[len(CONCAT_PREFIX) :].split("+"):
        alone = _unit(singles[part][rows])
        block = together[:, start : start + alone.shape[1]]
        start += alone.shape[1]
        cosine = np.sum(block * alone, axis=1)  # both unit-norm
        out[f"{part} min"], out[f"{part} mean"] = float(cosine.min()), float(cosine.mean())
    return out


def _summary(results: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Mean and worst fold per budget."""
    return {b: {"mean": float(np.mean(v)), "worst": float(np.min(v))} for b, v in results.items()}


def main() -> None:
    if not (DATA / "annotations.json").exists():
        print(f"backbone_probe: skipped, {DATA} is missing", file=sys.stderr)
        return
    started = time.perf_counter()
    singles, labels, seqs = single_features()
    fold = sequence_folds(labels, seqs, n_folds=FOLDS)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for name, features in configurations(singles).items():
        table[name] = _summary(probe(features, labels, fold))
        cells = " ".join(f"{b} {m['mean']:.3f}/{m['worst']:.3f}" for b, m in table[name].items())
        print(f"{name}: {cells}", flush=True)
    best = max(table, key=lambda n: table[n]["300"]["mean"])
    best_concat = max(
        (n for n in table if n.startswith(CONCAT_PREFIX)),
        key=lambda n: table[n]["300"]["mean"],
    )
    agreement = concat_agreement(best_concat, singles)
    print(f"{best_concat}: ConcatFeatures vs parts alone, cosine {agreement}", flush=True)
    result_write(
        name="backbone_probe",
        unit="crop top-1 at 300 labels, linear probe on raw features (mean of 3 folds)",
        value=table[best]["300"]["mean"],
        baseline_name=f"the same probe on {BASELINE} features, same labels",
        baseline=table[BASELINE]["300"]["mean"],
        params={
            "best": best,
            "best_concatenation": best_concat,
            "best_concatenation_cosine_to_parts_alone": agreement,
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
