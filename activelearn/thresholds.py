"""Per-species auto-accept thresholds. Django-free.

One global confidence threshold treats every species alike, but a classifier's confidence
means different things for a common, distinctive species and for a rare look-alike. So each
species gets its own: the lowest confidence at which that species' machine labels reach the
target accuracy on the evidence, which is every machine label whose correctness is known:
the audit labels (random crops, an unbiased sample) pooled with the grouped cross-validation's
held-out predictions of the labelled crops. A species with too little evidence keeps the
global threshold; one with enough evidence but no threshold that reaches the target gets
``None``: its machine labels are never auto-accepted.

Arrays are one value per machine label (N,): the predicted species id, its confidence, and
whether it was right.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Machine labels of a species needed before it gets a threshold of its own.
SPECIES_MIN_EVIDENCE = 20
# Machine labels at or above a species' threshold needed for it to count: a threshold kept
# by two lucky crops at the very top would say nothing.
SPECIES_MIN_ACCEPTED = 10


@dataclass(frozen=True)
class SpeciesThreshold:
    """One species' threshold on its ``n`` machine labels of evidence.

    ``threshold`` is None when no confidence level reaches ``target`` with at least
    ``SPECIES_MIN_ACCEPTED`` labels at or above it; then ``accuracy`` is None and
    ``n_accepted`` 0. Otherwise ``accuracy`` is that of the ``n_accepted`` labels at or
    above it.
    """

    species_id: int
    threshold: float | None
    accuracy: float | None
    n_accepted: int
    n: int


def _check(
    predicted: np.ndarray, confidence: np.ndarray, correct: np.ndarray, target: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    species = np.asarray(predicted).ravel()
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    hits = np.asarray(correct).ravel()
    if not (species.shape == conf.shape == hits.shape):
        raise ValueError(
            f"predicted {species.shape}, confidence {conf.shape} and correct {hits.shape} "
            "differ in length"
        )
    if not np.isfinite(conf).all():
        raise ValueError("confidence must be finite")
    if hits.dtype != bool and not np.isin(hits, (0, 1)).all():
        raise ValueError("correct must hold only booleans or 0 and 1")
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target must be in (0, 1], got {target}")
    return species.astype(np.int64), conf, hits.astype(bool)


def species_threshold_one(
    confidence: np.ndarray, correct: np.ndarray, *, target: float, min_accepted: int
) -> tuple[float | None, float | None, int]:
    """(threshold, accuracy, n accepted) for one species' (n,) evidence: the lowest distinct
    confidence t whose labels at >= t (ties go in together) number at least ``min_accepted``
    and reach ``target``; (None, None, 0) when none does. Every t is checked: accuracy is
    not monotone in t."""
    order = np.argsort(-confidence, kind="stable")
    conf, hits = confidence[order], correct[order]
    retained = np.arange(1, conf.size + 1)
    right = np.cumsum(hits)
    # The last row of each run of equal confidences: a threshold cannot split ties.
    last = np.flatnonzero(np.append(conf[1:] != conf[:-1], True))
    accuracy = right[last] / retained[last]
    ok = np.flatnonzero((accuracy >= target) & (retained[last] >= min_accepted))
    if ok.size == 0:
        return None, None, 0
    best = int(ok[-1])  # levels run high to low: the last one that qualifies is the lowest
    return float(conf[last[best]]), float(accuracy[best]), int(retained[last[best]])


def species_thresholds(
    *,
    predicted: np.ndarray,
    confidence: np.ndarray,
    correct: np.ndarray,
    target: float,
    min_evidence: int = SPECIES_MIN_EVIDENCE,
    min_accepted: int = SPECIES_MIN_ACCEPTED,
) -> dict[int, SpeciesThreshold]:
    """{species id: its threshold} for each species with at least ``min_evidence`` machine
    labels in the (N,) evidence; species left out fall back to the global threshold."""
    species, conf, hits = _check(predicted, confidence, correct, target)
    result: dict[int, SpeciesThreshold] = {}
    for species_id in np.unique(species):
        rows = species == species_id
        n = int(rows.sum())
        if n < min_evidence:
            continue
        threshold, accuracy, n_accepted = species_threshold_one(
            conf[rows], hits[rows], target=target, min_accepted=min_accepted
        )
        result[int(species_id)] = SpeciesThreshold(
            int(species_id), threshold, accuracy, n_accepted, n
        )
    return result


def thresholds_accept(
    *,
    species: np.ndarray,
    confidence: np.ndarray,
    per_species: dict[int, float | None],
    global_threshold: float | None,
) -> np.ndarray:
    """(N,) bool: which machine labels (species (N,), confidence (N,)) are auto-accepted:
    at or above their species' own threshold when it has one (None: never), else at or
    above the global threshold (None: never)."""
    species = np.asarray(species).ravel()
    conf = np.asarray(confidence, dtype=np.float64).ravel()
    default = np.inf if global_threshold is None else float(global_threshold)
    cut = np.full(conf.shape, default)
    for species_id, threshold in per_species.items():
        cut[species == species_id] = np.inf if threshold is None else float(threshold)
    return conf >= cut
