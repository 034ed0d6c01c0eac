"""Choose which unlabelled images to label next.

Two strategies over embedding vectors:

* ``k_center_greedy``: the greedy k-Center (core-set) selection of Sener & Savarese
  (ICLR 2018), as used by Norouzzadeh et al. (2019) and implemented in
  google/active-learning ``kcenter_greedy``: repeatedly pick the candidate farthest
  (Euclidean) from everything already covered (labelled rows plus earlier picks).
* ``random_selection``: uniform sampling without replacement, the usual baseline.

Everything here works on plain numpy arrays and row positions; mapping rows to
database ids is the caller's job. All randomness comes from ``random_state``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from activelearn._checks import check_int

__all__ = [
    "STRATEGIES",
    "Selection",
    "SelectionError",
    "k_center_greedy",
    "random_selection",
    "select",
]

# Cap on the number of float32 elements in one temporary block (64 MiB), so the
# default chunk_size stays safe for wide embeddings (e.g. d=2048).
_MAX_BLOCK_ELEMENTS = 1 << 24


class SelectionError(ValueError):
    """Raised for invalid selection input (shapes, dtypes, budget, seed, strategy)."""


@dataclass(frozen=True)
class Selection:
    """The rows chosen for labelling, in pick order.

    Attributes:
        indices: (budget',) int64 row positions into ``features``, in pick order;
            ``budget' = min(budget, number of candidates)``.
        distances: (budget',) float32 Euclidean distance from each pick to the covered
            set (labelled rows plus earlier picks) at the moment it was picked. NaN for
            random selection, and for the first k-Center pick when nothing is labelled
            (that pick is seeded, not chosen by distance).
        strategy: name of the strategy that produced the selection (a key of STRATEGIES).
        random_state: the seed used.
    """

    indices: np.ndarray
    distances: np.ndarray
    strategy: str
    random_state: int


def _check_int(value: object, *, name: str, minimum: int) -> int:
    return check_int(value, name=name, minimum=minimum, error=SelectionError)


def _check_mask(mask: object, *, name: str, n_rows: int) -> np.ndarray:
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


def _candidate_rows(
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
    labeled = _check_mask(labeled_mask, name="labeled_mask", n_rows=n_rows)
    if candidate_mask is None:
        allowed = ~labeled
    else:
        allowed = _check_mask(candidate_mask, name="candidate_mask", n_rows=n_rows) & ~labeled
    return labeled, np.flatnonzero(allowed).astype(np.int64)


def _empty_selection(*, strategy: str, random_state: int) -> Selection:
    """A selection with no picks (there were no candidates)."""
    return Selection(
        indices=np.empty(0, dtype=np.int64),
        distances=np.empty(0, dtype=np.float32),
        strategy=strategy,
        random_state=random_state,
    )


def _as_float32_features(features: object) -> np.ndarray:
    """Return features as a C-contiguous float32 (N, d) array with finite values."""
    arr = np.asarray(features)
    if arr.ndim != 2:
        raise SelectionError(f"features must be 2-D (N, d), got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SelectionError(f"features must be real numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise SelectionError("features contain NaN or infinite values")
    return arr


def _row_sq_norms(features: np.ndarray) -> np.ndarray:
    """(N,) float32 squared L2 norm of each row of a (N, d) float32 array."""
    norms: np.ndarray = np.einsum("ij,ij->i", features, features)
    return norms


def _min_sq_dist_to_set(
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    rows: np.ndarray,
    centres: np.ndarray,
    chunk_size: int,
) -> np.ndarray:
    """(len(rows),) float32 min squared distance from each of ``rows`` to ``centres``.

    Uses ||a||^2 + ||b||^2 - 2 a.b over blocks of rows x centres so that no
    len(rows) x len(centres) matrix is ever held; each block is capped at
    ``_MAX_BLOCK_ELEMENTS`` float32 elements.
    """
    n_dims = max(features.shape[1], 1)
    row_step = max(1, min(chunk_size, _MAX_BLOCK_ELEMENTS // n_dims))
    col_step = max(1, min(chunk_size, _MAX_BLOCK_ELEMENTS // row_step))
    out = np.full(rows.size, np.inf, dtype=np.float32)
    for r0 in range(0, rows.size, row_step):
        row_ids = rows[r0 : r0 + row_step]
        block_rows = features[row_ids]
        row_norms = sq_norms[row_ids][:, None]
        best = out[r0 : r0 + row_step]  # view: updated in place
        for c0 in range(0, centres.size, col_step):
            col_ids = centres[c0 : c0 + col_step]
            sq = block_rows @ features[col_ids].T
            sq *= -2.0
            sq += row_norms
            sq += sq_norms[col_ids][None, :]
            np.minimum(best, sq.min(axis=1), out=best)
    # Cancellation in the expansion can give tiny negatives for near-duplicates.
    np.maximum(out, 0.0, out=out)
    return out


def _update_min_sq(
    min_sq: np.ndarray,
    features: np.ndarray,
    sq_norms: np.ndarray,
    *,
    centre: int,
) -> None:
    """Lower ``min_sq`` (N,) in place with squared distances to row ``centre``: O(N d).

    Rows excluded from picking hold -inf and stay -inf.
    """
    sq = features @ features[centre]
    sq *= -2.0
    sq += sq_norms
    sq += sq_norms[centre]
    np.maximum(sq, 0.0, out=sq)
    np.minimum(min_sq, sq, out=min_sq)


def k_center_greedy(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    chunk_size: int = 65536,
) -> Selection:
    """Greedy k-Center selection (Sener & Savarese 2018).

    Repeatedly picks the candidate with the largest Euclidean distance to the covered
    set (labelled rows plus rows picked so far). Ties go to the lowest row index
    (ties meaning exactly equal float32 distances). If nothing is labelled, the first
    centre is drawn uniformly from the candidates with
    ``np.random.default_rng(random_state)``; every later pick is deterministic.

    Args:
        features: (N, d) embeddings; converted to float32 (copied if not already
            C-contiguous float32). Must be finite.
        labeled_mask: (N,) bool, True for rows already labelled (the covered set).
        budget: maximum number of rows to pick, > 0. If fewer candidates exist, all
            candidates are returned (fewer picks), in greedy order.
        random_state: seed >= 0, used only for the first pick when nothing is labelled.
        candidate_mask: (N,) bool, rows that may be picked; default ``~labeled_mask``.
            Labelled rows are never picked even if marked as candidates.
        chunk_size: maximum rows per block when computing distances to the labelled
            set (both axes); blocks are also capped at 2**24 float32 elements.
            Results do not depend on it.

    Returns:
        Selection with ``strategy="k_center"``; ``distances`` are the pick's distance
        to the covered set at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError (a ValueError): bad shapes/dtypes, non-finite features,
        budget <= 0, negative seed or chunk_size <= 0.

    Memory is O(N + block), never N x L; time O(N L d + budget N d).
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    chunk_size = _check_int(chunk_size, name="chunk_size", minimum=1)
    x = _as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    n_picks = min(budget, candidates.size)
    if n_picks == 0:
        return _empty_selection(strategy="k_center", random_state=random_state)

    sq_norms = _row_sq_norms(x)
    # -inf marks rows that can never be picked; argmax then ignores them.
    min_sq = np.full(x.shape[0], -np.inf, dtype=np.float32)
    picks: list[int] = []
    dists: list[float] = []
    labelled_rows = np.flatnonzero(labeled)
    if labelled_rows.size:
        min_sq[candidates] = _min_sq_dist_to_set(
            x, sq_norms, rows=candidates, centres=labelled_rows, chunk_size=chunk_size
        )
    else:
        # Seeded first centre: index 0 would bias every run towards the same image.
        first = int(np.random.default_rng(random_state).choice(candidates))
        min_sq[candidates] = np.inf
        min_sq[first] = -np.inf
        _update_min_sq(min_sq, x, sq_norms, centre=first)
        picks.append(first)
        dists.append(float("nan"))

    while len(picks) < n_picks:
        pick = int(np.argmax(min_sq))  # first maximum = lowest index on ties
        dists.append(float(np.sqrt(min_sq[pick])))
        picks.append(pick)
        min_sq[pick] = -np.inf
        _update_min_sq(min_sq, x, sq_norms, centre=pick)

    return Selection(
        indices=np.asarray(picks, dtype=np.int64),
        distances=np.asarray(dists, dtype=np.float32),
        strategy="k_center",
        random_state=random_state,
    )


def random_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
) -> Selection:
    """Uniform random selection without replacement among the candidates.

    Args and errors as ``k_center_greedy`` (features are used only for N and are not
    checked for finiteness). Returns Selection with ``strategy="random"``, indices in
    the order drawn by ``np.random.default_rng(random_state)`` and NaN distances.
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    arr = np.asarray(features)
    _, candidates = _candidate_rows(arr, labeled_mask=labeled_mask, candidate_mask=candidate_mask)
    n_picks = min(budget, candidates.size)
    if n_picks == 0:
        return _empty_selection(strategy="random", random_state=random_state)
    rng = np.random.default_rng(random_state)
    picks = rng.choice(candidates, size=n_picks, replace=False).astype(np.int64)
    return Selection(
        indices=picks,
        distances=np.full(n_picks, np.nan, dtype=np.float32),
        strategy="random",
        random_state=random_state,
    )


STRATEGIES: dict[str, Callable[..., Selection]] = {
    "k_center": k_center_greedy,
    "random": random_selection,
}


def select(
    strategy: str,
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
) -> Selection:
    """Run the strategy named ``strategy`` (a key of STRATEGIES) with these arguments.

    Raises:
        SelectionError (a ValueError): unknown strategy (the message lists the known
        ones), or anything the strategy itself rejects.
    """
    try:
        func = STRATEGIES[strategy]
    except (KeyError, TypeError):
        known = ", ".join(sorted(STRATEGIES))
        raise SelectionError(
            f"unknown selection strategy {strategy!r}; known strategies: {known}"
        ) from None
    return func(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
    )
