"""Retrain and predict at ten million crops (issue 19, item 6).

``python -m benchmarks retrain_predict_10m [--n N]`` (default 10,000,000), in a subprocess
whose peak RSS is recorded, does what ``activelearn.services.retrain`` does with the
classifier once its candidate is chosen, with the same functions: ``ensemble_train`` on
``LABELS`` labelled crops (project defaults: torch MLP (150, 100), one member, no class
balance), then for every crop of the memory-mapped (N, 256) vectors of
``benchmarks.crops_10m``: ``ensemble_predict_proba`` (65,536 rows at a time),
``event_probabilities_combine`` over capture events (the bursts of ``BURST`` crops),
``probabilities_top_k`` (k = 5) and ``event_probabilities``. Species are the data's clusters
folded onto ``SPECIES`` classes; the top-1 accuracy on unlabelled crops is recorded as a
sanity check. The cross-validated choice of backend and temperature (``classifier_choose``)
depends on the labels, not on N, and is not timed here (see "Classifier loop").

The baseline is one streaming pass over the same memory map (a matrix-vector product per
16 MiB block), the least any prediction of every crop must read, timed in the same process.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np

from activelearn.classifier import ensemble_predict_proba, ensemble_train, probabilities_top_k
from activelearn.evaluation import event_probabilities
from activelearn.events import event_probabilities_combine
from benchmarks import crops_10m
from benchmarks._result import result_write

LABELS, SPECIES, SEED = 15_000, 20, 0
_BLOCK_ROWS = (16 << 20) // (4 * crops_10m.D)


def _floor(features: np.ndarray) -> float:
    vector = np.ones(features.shape[1], dtype=np.float32)
    start = time.perf_counter()
    for r0 in range(0, features.shape[0], _BLOCK_ROWS):
        features[r0 : r0 + _BLOCK_ROWS] @ vector
    return time.perf_counter() - start


def _child(n: int) -> dict[str, float]:
    features = crops_10m.vectors_open(n)
    species = crops_10m.cluster_labels(n) % SPECIES
    events = np.arange(n) // crops_10m.BURST
    rows = np.sort(np.random.default_rng(SEED).choice(n, size=min(LABELS, n), replace=False))
    floor_first = _floor(features)  # also brings the file into the page cache
    start = time.perf_counter()
    members = ensemble_train(np.asarray(features[rows]), species[rows], random_state=SEED)
    train_s = time.perf_counter() - start
    start = time.perf_counter()
    probs, classes = ensemble_predict_proba(members, features)
    proba_s = time.perf_counter() - start
    combined = event_probabilities_combine(probs, events)
    top_labels, _ = probabilities_top_k(combined.probabilities, classes=classes, k=5)
    per_event = event_probabilities(probs, events)
    predict_s = time.perf_counter() - start
    unlabelled = np.ones(n, dtype=bool)
    unlabelled[rows] = False
    accuracy = float(np.mean(top_labels[unlabelled, 0] == species[unlabelled]))
    floor_s = min(floor_first, _floor(features))
    return {
        "train_s": train_s,
        "predict_proba_s": proba_s,
        "predict_s": predict_s,
        "floor_s": floor_s,
        "events": int(per_event.probabilities.shape[0]),
        "top1_accuracy_unlabelled": accuracy,
        "peak_rss": crops_10m.peak_rss_bytes(),
    }


def main() -> None:
    n = crops_10m.N
    path = crops_10m.vectors_file(n)
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.retrain_predict_10m", str(n)],
        check=True,
        capture_output=True,
        text=True,
    )
    r = json.loads(done.stdout.strip().splitlines()[-1])
    total = r["train_s"] + r["predict_s"]
    data_bytes = path.stat().st_size
    params = {
        "n": n,
        "d": crops_10m.D,
        "labels": LABELS,
        "species": SPECIES,
        "backend": "torch MLP (150, 100), ensemble of 1",
        "data_bytes": data_bytes,
        "peak_rss_over_data": r["peak_rss"] / data_bytes,
        **r,
    }
    out = result_write(
        name="retrain_predict_10m",
        unit="s",
        value=total,
        baseline_name="one streaming pass over the same memory map",
        baseline=r["floor_s"],
        params=params,
    )
    print(
        f"retrain_predict_10m N={n}: train {r['train_s']:.0f} s, predict {r['predict_s']:.0f} s "
        f"(probabilities {r['predict_proba_s']:.0f} s; one pass over the data "
        f"{r['floor_s']:.1f} s), top-1 {r['top1_accuracy_unlabelled']:.3f}, peak RSS "
        f"{r['peak_rss'] / 1e9:.2f} GB for {data_bytes / 1e9:.2f} GB of data -> {out}"
    )


if __name__ == "__main__":
    print(json.dumps(_child(int(sys.argv[1]))))
