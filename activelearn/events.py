"""A crop's machine probabilities combined with its capture event's. Django-free.

The frames of one burst almost always show one species, so the mean of the event's crop
probabilities is better evidence than any one crop (missouri-dev, 3 rotated sequence folds:
+7 points of crop top-1 at 100 labels, +15 at 300; benchmarks/README.md#capture-events). Each
crop's stored probabilities are ``(1 - weight) * own + weight * event mean``. A guard keeps
mixed events apart: a crop whose own top-1 differs from the event's, with its own confidence at
or above ``dissent``, keeps its own probabilities (a confident dissent is more likely another
animal than noise).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from activelearn.evaluation import event_probabilities

# Chosen on the mean and the worst of 3 rotated folds of missouri-dev (0, 0.7, 0.8, 0.9 and 1
# measured): the event mean alone is best; the dissent guard never fired there (no mixed
# events), and keeps mixed events of other projects apart.
DEFAULT_EVENT_WEIGHT = 1.0
DEFAULT_DISSENT = 0.5
# Crops combined at a time (bounds the float64 temporaries: 65,536 x C x 8 bytes each).
_BLOCK_ROWS = 65536


@dataclass(frozen=True)
class EventCombination:
    """``probabilities`` (N, C) combined rows (each sums to 1); ``event_used`` (N,) bool, False
    for crops alone in their event or kept apart by the guard; ``weight`` as applied."""

    probabilities: np.ndarray
    event_used: np.ndarray
    weight: float


def event_probabilities_combine(
    probabilities: np.ndarray,
    events: np.ndarray,
    *,
    weight: float = DEFAULT_EVENT_WEIGHT,
    dissent: float = DEFAULT_DISSENT,
) -> EventCombination:
    """Combine each crop's probabilities (N, C) with the mean over its event (``events`` (N,),
    any hashable labels; crops with equal labels share an event).

    ``weight`` in [0, 1] (0: crops alone); ``dissent`` in (0, 1] (above 1: no guard).
    """
    p = np.asarray(probabilities)
    if p.dtype not in (np.float32, np.float64):
        p = p.astype(np.float64)
    ev = np.asarray(events)
    if p.ndim != 2 or ev.shape != (p.shape[0],):
        raise ValueError(
            f"probabilities (N, C) and events (N,) expected, got {p.shape}, {ev.shape}"
        )
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"weight must lie in [0, 1], got {weight}")
    if not dissent > 0.0:
        raise ValueError(f"dissent must be > 0, got {dissent}")
    out = p.astype(np.float32)  # a copy even when p is float32: the caller's array stays
    used = np.zeros(p.shape[0], dtype=bool)
    if p.shape[0] == 0 or weight == 0.0:
        return EventCombination(out, used, weight)
    # The per-event means are the event predictions' own (evaluation.event_probabilities).
    per_event = event_probabilities(p, ev)
    # Rows in blocks, in float64 within a block: the same numbers as the whole (N, C) array in
    # float64 at once, without its copies (1.6 GB each at 10M crops x 20 species; issue 19).
    for r0 in range(0, p.shape[0], _BLOCK_ROWS):
        rows = slice(r0, r0 + _BLOCK_ROWS)
        own = p[rows].astype(np.float64)
        index = per_event.event_index[rows]
        event_mean = per_event.probabilities[index].astype(np.float64)
        dissenting = (own.argmax(axis=1) != event_mean.argmax(axis=1)) & (
            own.max(axis=1) >= dissent
        )
        block_used = (per_event.n_crops[index] > 1) & ~dissenting
        used[rows] = block_used
        out[rows][block_used] = (1.0 - weight) * own[block_used] + weight * event_mean[block_used]
    return EventCombination(out, used, weight)
