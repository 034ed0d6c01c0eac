"""Choose which unlabelled images to label next.

Strategies over embedding vectors and classifier probabilities, as compared by
Norouzzadeh et al. (2019):

* ``k_center_greedy``: the greedy k-Center (core-set) selection of Sener & Savarese
  (ICLR 2018), as implemented in google/active-learning ``kcenter_greedy``: repeatedly
  pick the candidate farthest (Euclidean) from everything already covered (labelled
  rows plus earlier picks).
* ``random_selection``: uniform sampling without replacement, the usual baseline.
* ``confidence_selection``, ``margin_selection``, ``entropy_selection``: uncertainty
  sampling on the current classifier's class probabilities (least confident, smallest
  top-two margin, highest entropy first).
* ``hybrid_selection``: k-Center greedy restricted to the least confident candidates,
  i.e. diversity among the uncertain.
* ``typical_selection`` (``activelearn.selection_typical``): the most typical crop of each
  least-covered kNN neighbourhood (TypiClust-style, O(N k) from FAISS), for low budgets.

All strategies share one keyword-only signature (see ``select``); the uncertainty
strategies need ``probabilities``, the others ignore it. Everything here works on
plain numpy arrays and row positions; mapping rows to database ids is the caller's
job. All randomness comes from ``random_state``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from activelearn import selection_stream as stream
from activelearn._checks import check_int
from activelearn.selection_types import Selection, SelectionError
from activelearn.selection_types import candidate_rows as _candidate_rows
from activelearn.selection_types import empty_selection as _empty_selection
from activelearn.selection_typical import typical_selection

__all__ = [
    "STRATEGIES",
    "Selection",
    "SelectionError",
    "confidence_selection",
    "entropy_selection",
    "hybrid_selection",
    "k_center_greedy",
    "margin_selection",
    "min_sq_distances_update",
    "random_selection",
    "select",
    "typical_selection",
]

# A float32 softmax row can sum to slightly more than 1 by rounding; anything beyond
# this slack means the caller passed something that is not probabilities.
_ROW_SUM_TOLERANCE = 1e-3


def _check_int(value: object, *, name: str, minimum: int) -> int:
    return check_int(value, name=name, minimum=minimum, error=SelectionError)


def min_sq_distances_update(
    features: np.ndarray,
    *,
    min_sq: np.ndarray | None,
    new_rows: np.ndarray,
    chunk_size: int = 65536,
) -> np.ndarray:
    """Squared distance from every row to a growing covered set: the k-Center cache.

    Args:
        features: (N, d) embeddings (finite; converted to float32).
        min_sq: (N,) float32 squared distance of each row to the rows covered so far,
            +inf where nothing is covered yet; None means nothing is covered.
        new_rows: (M,) int row positions newly covered (e.g. crops labelled since the
            last round); M may be 0.
        chunk_size: at most this many new rows are multiplied with a block of features at
            once (a block also holds at most 2**20 distances). Results do not depend on it.

    Returns:
        A new (N,) float32 array, ``min(min_sq, distance to new_rows) ** 2``, clipped at
        0. Costs O(N M d) time, one read of the features (a matrix product per block) and
        O(N + M d + block) memory: an N x M matrix is never held, so a round's update only
        pays for the labels added since the last one.

    Raises:
        SelectionError: bad shapes, non-finite features, row positions out of range.
    """
    chunk_size = _check_int(chunk_size, name="chunk_size", minimum=1)
    x = stream.as_float32_features(features, check_finite=False)
    n_rows = x.shape[0]
    base = _check_min_sq(min_sq, n_rows=n_rows)
    rows = np.asarray(new_rows)
    if rows.ndim != 1 or (rows.size and not np.issubdtype(rows.dtype, np.integer)):
        raise SelectionError(f"new_rows must be a 1-D integer array, got {rows.dtype} {rows.shape}")
    rows = np.unique(rows.astype(np.int64))
    if rows.size and (rows[0] < 0 or rows[-1] >= n_rows):
        raise SelectionError(f"new_rows must lie in [0, {n_rows}), got {rows[0]}..{rows[-1]}")
    fresh = base.copy()
    if rows.size == 0:
        stream.row_sq_norms(x)  # the finiteness check the update would have made
        return fresh
    # The norms are computed in the same pass as the products (one read of the data).
    stream.fold_centres(fresh, x, centres=np.asarray(x[rows]), sq_norms=None, group=chunk_size)
    return fresh


def _check_min_sq(min_sq: np.ndarray | None, *, n_rows: int) -> np.ndarray:
    """Return a (n_rows,) float32 cache (all +inf for None) or raise SelectionError."""
    if min_sq is None:
        return np.full(n_rows, np.inf, dtype=np.float32)
    arr = np.asarray(min_sq)
    if arr.shape != (n_rows,) or arr.dtype != np.float32:
        raise SelectionError(
            f"min_sq_distances must be float32 of shape ({n_rows},), got {arr.dtype} {arr.shape}"
        )
    if np.isnan(arr).any() or (arr < 0).any():
        raise SelectionError("min_sq_distances must be >= 0 (or +inf), without NaN")
    return arr


def k_center_greedy(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
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
        probabilities: ignored (accepted so that every strategy shares one signature).
        min_sq_distances: optional (N,) float32 cache of each row's squared distance
            to the labelled rows (``min_sq_distances_update``). When given, the O(N L d)
            distances to the labelled set are not recomputed; it must describe exactly
            the rows of ``labeled_mask`` (the picks are then the same as without it).
        chunk_size: maximum rows per block when computing distances to the labelled
            set (both axes); blocks are also capped at 2**24 float32 elements.
            Results do not depend on it.

    Returns:
        Selection with ``strategy="k_center"``; ``distances`` are the pick's distance
        to the covered set at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError (a ValueError): bad shapes/dtypes, non-finite features,
        budget <= 0, negative seed or chunk_size <= 0.

    Memory is O(N + block) plus the rows ``selection_stream.greedy_picks`` holds (64 MiB),
    never N x L; time O(N L d + budget N d) at worst, but most picks read only the held rows
    (one pass over the data per pick at worst; a handful for a whole round on clustered
    embeddings).
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    chunk_size = _check_int(chunk_size, name="chunk_size", minimum=1)
    x = stream.as_float32_features(features, check_finite=False)
    sq_norms = stream.row_sq_norms(x)  # also the finiteness check
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    n_picks = min(budget, candidates.size)
    if n_picks == 0:
        return _empty_selection(strategy="k_center", random_state=random_state)

    # -inf marks rows that can never be picked; argmax then ignores them.
    min_sq = np.full(x.shape[0], -np.inf, dtype=np.float32)
    picks: list[int] = []
    dists: list[float] = []
    labelled_rows = np.flatnonzero(labeled)
    if labelled_rows.size and min_sq_distances is not None:
        min_sq[candidates] = _check_min_sq(min_sq_distances, n_rows=x.shape[0])[candidates]
    elif labelled_rows.size and 2 * candidates.size >= x.shape[0]:
        # Most rows are candidates: one streaming pass over all of them beats gathering.
        covered = np.full(x.shape[0], np.inf, dtype=np.float32)
        stream.fold_centres(
            covered, x, centres=np.asarray(x[labelled_rows]), sq_norms=sq_norms, group=chunk_size
        )
        min_sq[candidates] = covered[candidates]
    elif labelled_rows.size:
        min_sq[candidates] = stream.min_sq_dist_to_set(
            x, sq_norms, rows=candidates, centres=labelled_rows, chunk_size=chunk_size
        )
    else:
        # Seeded first centre: index 0 would bias every run towards the same image.
        first = int(np.random.default_rng(random_state).choice(candidates))
        min_sq[candidates] = np.inf
        min_sq[first] = -np.inf
        stream.update_min_sq(min_sq, x, sq_norms, vector=x[first], vector_sq_norm=sq_norms[first])
        picks.append(first)
        dists.append(float("nan"))

    stream.greedy_picks(min_sq, x, sq_norms, n_picks=n_picks, picks=picks, dists=dists)
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
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Uniform random selection without replacement among the candidates.

    Args and errors as ``k_center_greedy`` (features are used only for N and are not
    checked for finiteness; ``probabilities`` is ignored). Returns Selection with
    ``strategy="random"``, indices in the order drawn by
    ``np.random.default_rng(random_state)`` and NaN distances.
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


def _as_probabilities(probabilities: object, *, n_rows: int) -> np.ndarray:
    """Return ``probabilities`` as a (n_rows, C) float64 array or raise SelectionError.

    Checks: present, 2-D with one row per feature row and C >= 1, real, finite,
    non-negative, and each row summing to at most 1 (plus float32 rounding slack).
    Scores are computed in float64 so that float32 rounding does not create ties.
    """
    if probabilities is None:
        raise SelectionError(
            "this strategy needs probabilities: the (N, C) class probabilities of the "
            "current classifier for every row, got None"
        )
    arr = np.asarray(probabilities)
    if arr.ndim != 2 or arr.shape[0] != n_rows or arr.shape[1] < 1:
        raise SelectionError(
            f"probabilities must have shape ({n_rows}, C) with C >= 1 to match features, "
            f"got {arr.shape}"
        )
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise SelectionError(f"probabilities must be real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if not np.isfinite(arr).all():
        raise SelectionError("probabilities contain NaN or infinite values")
    if (arr < 0).any():
        raise SelectionError("probabilities must be >= 0")
    if (arr.sum(axis=1) > 1.0 + _ROW_SUM_TOLERANCE).any():
        raise SelectionError("probabilities rows must sum to at most 1")
    return arr


def _missing_mass(probs: np.ndarray) -> np.ndarray:
    """(N,) probability not listed in each row of a top-k truncated (N, C) matrix (>= 0)."""
    missing: np.ndarray = np.clip(1.0 - probs.sum(axis=1), 0.0, None)
    return missing


def _confidence_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) top-class probability; lower is more uncertain.

    For a top-k truncated row every unseen class has at most the smallest listed
    probability, so the largest listed value is the true top-1: the missing mass is
    irrelevant here.
    """
    top: np.ndarray = probs.max(axis=1)
    return top


def _margin_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) top-1 minus top-2 probability; lower is more uncertain.

    Under top-k truncation an unseen class holds at most ``min(missing mass, smallest
    listed probability)``; the runner-up is the larger of that and the second listed
    value. With C >= 2 this is just the second listed value; with C == 1 (top-1 rows)
    it is ``min(1 - p1, p1)``, the smallest margin consistent with the row.
    """
    n_classes = probs.shape[1]
    if n_classes >= 2:
        top_two = np.partition(probs, (n_classes - 2, n_classes - 1), axis=1)[:, -2:]
        top, listed_second = top_two[:, 1], top_two[:, 0]
    else:
        top, listed_second = probs[:, 0], np.zeros(probs.shape[0])
    unseen_cap = np.minimum(_missing_mass(probs), probs.min(axis=1))
    margin: np.ndarray = top - np.maximum(listed_second, unseen_cap)
    return margin


def _entropy_scores(probs: np.ndarray) -> np.ndarray:
    """(N,) Shannon entropy in nats; higher is more uncertain.

    The missing mass of a truncated row counts as one extra "other" class. Spreading it
    over several unseen classes could only raise the entropy, so this is a lower bound
    for truncated rows and exact for complete ones (missing mass 0 adds nothing).
    """
    missing = _missing_mass(probs)
    # p log p with 0 log 0 = 0; log(1) = 0 avoids the warning for zeros.
    listed = (probs * np.log(np.where(probs > 0, probs, 1.0))).sum(axis=1)
    other = missing * np.log(np.where(missing > 0, missing, 1.0))
    entropy: np.ndarray = -(listed + other)
    return np.maximum(entropy, 0.0)


def _rank(scores: np.ndarray, candidates: np.ndarray, *, highest_first: bool) -> np.ndarray:
    """Candidates (sorted row positions) ordered by score; ties keep the lowest index first.

    A stable sort over ascending candidates gives the lowest-index tie-break; negating
    (exact in floating point) turns "highest first" into an ascending sort.
    """
    key = scores[candidates]
    order = np.argsort(-key if highest_first else key, kind="stable")
    ranked: np.ndarray = candidates[order]
    return ranked


def _uncertainty_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None,
    probabilities: np.ndarray | None,
    strategy: str,
    score: Callable[[np.ndarray], np.ndarray],
    highest_first: bool,
) -> Selection:
    """Shared body of the uncertainty strategies: rank candidates by ``score``, take the top."""
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    arr = np.asarray(features)
    _, candidates = _candidate_rows(arr, labeled_mask=labeled_mask, candidate_mask=candidate_mask)
    probs = _as_probabilities(probabilities, n_rows=arr.shape[0])
    if candidates.size == 0:
        return _empty_selection(strategy=strategy, random_state=random_state)
    scores = score(probs)
    picks = _rank(scores, candidates, highest_first=highest_first)[:budget]
    return Selection(
        indices=picks,
        distances=scores[picks].astype(np.float32),
        strategy=strategy,
        random_state=random_state,
    )


def confidence_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Least-confidence sampling: lowest top-class probability first.

    Args:
        features: (N, d) array; only N is used (not checked for finiteness).
        labeled_mask, budget, random_state, candidate_mask: as ``k_center_greedy``.
            The selection is deterministic; ``random_state`` is only recorded.
        probabilities: (N, C) class probabilities of the current classifier, one row
            per feature row, each row >= 0 and summing to <= 1. A row may be a top-k
            truncation (sum < 1); for confidence the missing mass does not matter
            because every unseen class is at most the smallest listed value.

    Returns:
        Selection with ``strategy="confidence"``, at most ``budget`` candidates in
        increasing top-class probability (ties: lowest row index first);
        ``distances`` hold each pick's top-class probability.

    Raises:
        SelectionError (a ValueError): as ``k_center_greedy``, plus missing or
        misshaped probabilities, negative values, NaN/inf or rows summing above 1.
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="confidence",
        score=_confidence_scores,
        highest_first=False,
    )


def margin_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Margin sampling: smallest gap between the two most probable classes first.

    Args and errors as ``confidence_selection``. For a top-k truncated row the
    runner-up is the second listed value; a top-1 row (C == 1) has runner-up
    ``min(1 - p1, p1)``, treating the missing mass as one possible class (so the
    margin is the smallest one consistent with the row).

    Returns:
        Selection with ``strategy="margin"``, at most ``budget`` candidates in
        increasing margin (ties: lowest row index first); ``distances`` hold each
        pick's margin (top-1 minus top-2 probability, in [0, 1]).
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="margin",
        score=_margin_scores,
        highest_first=False,
    )


def entropy_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Entropy sampling: highest Shannon entropy of the class probabilities first.

    Args and errors as ``confidence_selection``. The entropy is
    ``-sum(p log p) - m log m`` in nats, where ``m = max(0, 1 - sum(p))`` is the
    missing mass of a top-k truncated row counted as one extra "other" class (a lower
    bound on the true entropy; exact for complete rows, where m = 0).

    Returns:
        Selection with ``strategy="entropy"``, at most ``budget`` candidates in
        decreasing entropy (ties: lowest row index first); ``distances`` hold each
        pick's entropy in nats.
    """
    return _uncertainty_selection(
        features,
        labeled_mask=labeled_mask,
        budget=budget,
        random_state=random_state,
        candidate_mask=candidate_mask,
        probabilities=probabilities,
        strategy="entropy",
        score=_entropy_scores,
        highest_first=True,
    )


def hybrid_selection(
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
    pool_factor: int = 10,
    chunk_size: int = 65536,
) -> Selection:
    """Diversity among the uncertain: k-Center greedy over the least confident candidates.

    The pool is the ``pool_factor * budget`` candidates with the lowest top-class
    probability (ranked as ``confidence_selection``, ties by lowest index); then
    ``k_center_greedy`` picks ``budget`` rows from that pool with the labelled rows as
    the covered set. Uncertainty alone tends to pick near-duplicates (a burst of
    frames of one animal); the k-Center step spreads the picks out.

    Args:
        features: (N, d) embeddings for the k-Center step (finite; see k_center_greedy).
        labeled_mask, budget, random_state, candidate_mask, chunk_size: as
            ``k_center_greedy``; ``random_state`` seeds the first pick only when
            nothing is labelled (drawn uniformly from the pool).
        probabilities: as ``confidence_selection``.
        pool_factor: pool size as a multiple of ``budget``, >= 1. With 1 the result is
            the least confident rows in k-Center order.

    Returns:
        Selection with ``strategy="hybrid"``; ``distances`` are the k-Center
        distances to the covered set at pick time (NaN for a seeded first pick).

    Raises:
        SelectionError (a ValueError): as ``confidence_selection`` and
        ``k_center_greedy``, plus pool_factor < 1.
    """
    budget = _check_int(budget, name="budget", minimum=1)
    random_state = _check_int(random_state, name="random_state", minimum=0)
    pool_factor = _check_int(pool_factor, name="pool_factor", minimum=1)
    x = stream.as_float32_features(features)
    labeled, candidates = _candidate_rows(
        x, labeled_mask=labeled_mask, candidate_mask=candidate_mask
    )
    probs = _as_probabilities(probabilities, n_rows=x.shape[0])
    ranked = _rank(_confidence_scores(probs), candidates, highest_first=False)
    pool_mask = np.zeros(x.shape[0], dtype=bool)
    pool_mask[ranked[: pool_factor * budget]] = True
    picked = k_center_greedy(
        x,
        labeled_mask=labeled,
        budget=budget,
        random_state=random_state,
        candidate_mask=pool_mask,
        min_sq_distances=min_sq_distances,
        chunk_size=chunk_size,
    )
    return dataclasses.replace(picked, strategy="hybrid")


STRATEGIES: dict[str, Callable[..., Selection]] = {
    "k_center": k_center_greedy,
    "typical": typical_selection,
    "random": random_selection,
    "confidence": confidence_selection,
    "margin": margin_selection,
    "entropy": entropy_selection,
    "hybrid": hybrid_selection,
}


def select(
    strategy: str,
    features: np.ndarray,
    *,
    labeled_mask: np.ndarray,
    budget: int,
    random_state: int,
    candidate_mask: np.ndarray | None = None,
    probabilities: np.ndarray | None = None,
    min_sq_distances: np.ndarray | None = None,
) -> Selection:
    """Run the strategy named ``strategy`` (a key of STRATEGIES) with these arguments.

    ``probabilities`` ((N, C) class probabilities, see ``confidence_selection``) is
    required by "confidence", "margin", "entropy" and "hybrid", ignored by the others;
    ``min_sq_distances`` (the k-Center cache, see ``k_center_greedy``) is used by
    "k_center" and "hybrid" and ignored by the others.
    Strategy-specific tuning arguments (``chunk_size``, ``pool_factor``) keep their
    defaults here; call the strategy function directly to change them.

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
        probabilities=probabilities,
        min_sq_distances=min_sq_distances,
    )
