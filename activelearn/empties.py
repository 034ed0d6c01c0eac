"""Checking the detector's empties: a sample stratified by camera, and the missed-animal rate
with its 95% interval. Django-free (ids and counts in, numbers out).

The sample is drawn with proportional allocation (each camera gets its share of the sample,
rounded by largest remainder, at least one image per camera while the sample allows), so the
pooled proportion of answers is the stratified estimate up to that rounding: the rate and its
Wilson interval are computed on the pooled answers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

# The normal quantile of a two-sided 95% interval.
Z_95 = 1.959963984540054


def allocation_proportional(sizes: Sequence[int], n: int) -> list[int]:
    """How many of ``n`` draws each stratum of ``sizes`` gets: proportional to its size,
    rounded by largest remainder (ties to the earlier stratum), never more than its size.

    Every non-empty stratum gets at least one draw while ``n`` reaches the number of non-empty
    strata, so a small camera is not left out. The result sums to ``min(n, sum(sizes))``.
    """
    if n < 0 or any(s < 0 for s in sizes):
        raise ValueError("sizes and n must be non-negative")
    total = sum(sizes)
    n = min(n, total)
    if n == 0:
        return [0] * len(sizes)
    nonempty = [i for i, s in enumerate(sizes) if s > 0]
    out = [0] * len(sizes)
    if n < len(nonempty):
        # Fewer draws than cameras: the largest (earlier on ties) get one each.
        for i in sorted(nonempty, key=lambda i: (-sizes[i], i))[:n]:
            out[i] = 1
        return out
    for i in nonempty:
        out[i] = 1
    rest = n - len(nonempty)
    room = [s - o for s, o in zip(sizes, out, strict=True)]
    room_total = sum(room)
    if rest == 0 or room_total == 0:
        return out
    quotas = [rest * r / room_total for r in room]
    floors = [min(math.floor(q), r) for q, r in zip(quotas, room, strict=True)]
    out = [o + f for o, f in zip(out, floors, strict=True)]
    left = rest - sum(floors)
    # Largest remainders first; a stratum already full passes its turn on.
    for i in sorted(range(len(sizes)), key=lambda i: (-(quotas[i] - floors[i]), i)) * 2:
        if left == 0:
            break
        if out[i] < sizes[i]:
            out[i] += 1
            left -= 1
    return out


def sample_stratified(
    ids_by_stratum: Mapping[str, Sequence[int]], n: int, *, seed: int
) -> list[int]:
    """``n`` ids drawn without replacement, each stratum (e.g. camera) in proportion to its size
    (``allocation_proportional``); reproducible from ``seed``. Strata are taken in sorted order
    of their keys, so the draw does not depend on the mapping's order. Returned sorted."""
    keys = sorted(ids_by_stratum)
    pools = [sorted(ids_by_stratum[k]) for k in keys]
    counts = allocation_proportional([len(p) for p in pools], n)
    rng = np.random.default_rng(seed)
    drawn: list[int] = []
    for pool, k in zip(pools, counts, strict=True):
        if k:
            drawn.extend(int(i) for i in rng.choice(np.asarray(pool), size=k, replace=False))
    return sorted(drawn)


def wilson_interval(successes: int, n: int, *, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion: every p with
    |successes - n p| <= z sqrt(n p (1 - p)). (0, 1) when ``n`` is 0 (nothing is known)."""
    if n < 0 or not 0 <= successes <= n:
        raise ValueError(f"need 0 <= successes <= n, got {successes} of {n}")
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    # The bounds are exactly 0 and 1 at 0 and n successes; rounding must not push them past.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class MissedRate:
    """Of ``checked`` detector-empty images, ``missed`` had an animal: the ``rate`` (None before
    any check) with its 95% Wilson interval, and the measured empty accuracy (1 - rate)."""

    checked: int
    missed: int
    rate: float | None
    low: float
    high: float

    @property
    def empty_accuracy(self) -> float | None:
        return None if self.rate is None else 1.0 - self.rate


def missed_rate(*, missed: int, checked: int) -> MissedRate:
    """The missed-animal rate of the checked empties with its 95% interval."""
    low, high = wilson_interval(missed, checked)
    return MissedRate(
        checked=checked,
        missed=missed,
        rate=None if checked == 0 else missed / checked,
        low=low,
        high=high,
    )
