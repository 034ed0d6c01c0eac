"""k-Center greedy against the reference path of google/active-learning.

The reference computes ``sklearn.metrics.pairwise_distances(features, [centre])`` for every new
centre and takes the element-wise minimum; ours is chunked float32 numpy. Same inputs, same seed,
same picks (checked), both timed in this run.
"""

from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import pairwise_distances

from activelearn.selection import k_center_greedy
from benchmarks._result import result_write

N, D, K, LABELLED, SEED = 200_000, 256, 100, 1_000, 0


def _reference(features: np.ndarray, labelled: np.ndarray, budget: int) -> list[int]:
    min_d = pairwise_distances(features, features[labelled]).min(axis=1)
    picks: list[int] = []
    for _ in range(budget):
        pick = int(np.argmax(min_d))
        picks.append(pick)
        min_d = np.minimum(min_d, pairwise_distances(features, features[[pick]]).ravel())
    return picks


def main() -> None:
    rng = np.random.default_rng(SEED)
    features = rng.standard_normal((N, D), dtype=np.float32)
    features /= np.linalg.norm(features, axis=1, keepdims=True)
    labelled = rng.choice(N, size=LABELLED, replace=False)
    mask = np.zeros(N, dtype=bool)
    mask[labelled] = True

    start = time.perf_counter()
    ours = k_center_greedy(features, labeled_mask=mask, budget=K, random_state=SEED)
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    reference = _reference(features, labelled, K)
    reference_s = time.perf_counter() - start
    agree = float(np.mean(np.asarray(reference) == ours.indices))
    path = result_write(
        name="kcenter_greedy",
        unit="s",
        value=ours_s,
        baseline_name="google/active-learning path (sklearn pairwise_distances per centre)",
        baseline=reference_s,
        params={
            "n": N,
            "d": D,
            "k": K,
            "labelled": LABELLED,
            "seed": SEED,
            "same_picks_share": agree,
        },
    )
    print(
        f"kcenter_greedy: {ours_s:.2f} s vs reference {reference_s:.2f} s "
        f"(same picks: {agree:.0%}) -> {path}"
    )


if __name__ == "__main__":
    main()
