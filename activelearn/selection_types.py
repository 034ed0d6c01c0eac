"""What every selection strategy returns and raises (``activelearn.selection`` re-exports both).

Kept apart so that strategy modules ``activelearn.selection`` registers (e.g.
``selection_typical``) can build on them without importing it back.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Selection", "SelectionError", "candidate_rows", "check_mask", "empty_selection"]


class SelectionError(ValueError):
    """Raised for invalid selection input (shapes, dtypes, budget, seed, strategy)."""


@dataclass(frozen=True)
class Selection:
    """The rows chosen for labelling, in pick order.

    Attributes:
        indices: (budget',) int64 row positions into ``features``, in pick order;
            ``budget' = min(budget, number of candidates)``.
        distances: (budget',) float32 score of each pick, by strategy:
            k-Center and hybrid: Euclidean distance to the covered set (labelled rows
            plus earlier picks) at the moment it was picked, NaN for a seeded first pick
            when nothing is labelled; random: NaN; confidence: the pick's top-class
            probability; margin: top-1 minus top-2 probability; entropy: entropy in
            nats; typical: the pick's typicality (1 / mean kNN distance). (The name
            predates the uncertainty strategies.)
        strategy: name of the strategy that produced the selection (a key of
            ``selection.STRATEGIES``).
        random_state: the seed used.
    """

    indices: np.ndarray
    distances: np.ndarray
    strategy: str
    random_state: int


def check_mask(mask: object, *, name: str, n_rows: int) -> np.ndarray:
    """Return ``mask`` as a (n_rows,) bool array or raise SelectionError.

    Integer 0/1 arrays are rejected on purpose: used as an index they would select
    rows 0 and 1 instead of masking, a classic silent bug.
    """
    arr = np.asarray(mask)
    if arr.dtype != np.bool_:
        raise SelectionError(f"{name} must be a bool array, got dtype {arr.dtype}")
    if arr.shape != (n_rows,):
        raise SelectionError(
            f"{name} must have shape ({n_rows},) to match features, got {arr.shape}"
        )
    return arr


def candidate_rows(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    candidate_mask: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """Validate masks against ``features``; return (labelled mask, sorted candidate rows).

    Candidates are ``candidate_mask & ~labeled_mask`` (default ``~labeled_mask``), so a
    labelled row is never picked.
    """
    if features.ndim != 2:
        raise SelectionError(f"features must be 2-D (N, d), got shape {features.shape}")
    n_rows = features.shape[0]
    labeled = check_mask(labeled_mask, name="labeled_mask", n_rows=n_rows)
    if candidate_mask is None:
        allowed = ~labeled
    else:
        allowed = check_mask(candidate_mask, name="candidate_mask", n_rows=n_rows) & ~labeled
    return labeled, np.flatnonzero(allowed).astype(np.int64)


def empty_selection(*, strategy: str, random_state: int) -> Selection:
    """A selection with no picks (there were no candidates)."""
    return Selection(
        indices=np.empty(0, dtype=np.int64),
        distances=np.empty(0, dtype=np.float32),
        strategy=strategy,
        random_state=random_state,
    )
